package relay_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"tailscale.com/tailcfg"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// startRelay runs a relay from YAML on loopback and returns it with its DERP region, built
// only from what the relay's own derpmap output says.
func startRelay(t *testing.T, yaml string) (*relay.Relay, *tailcfg.DERPRegion) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), false)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.StateDir = t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := relay.New(relay.Options{Config: cfg.Relay, StateDir: cfg.StateDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay run: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("relay run: %v", err)
	}
	rc := cfg.Relay
	rc.Listen = r.Addr().String()
	return r, regionFromDERPMap(t, rc, r.CertPin())
}

// regionFromDERPMap renders the json derpmap format and decodes it with Tailscale's types,
// so the test proves the printed map is what clients can use.
func regionFromDERPMap(t *testing.T, rc config.Relay, pin string) *tailcfg.DERPRegion {
	t.Helper()
	var sb strings.Builder
	if err := relay.WriteDERPMap(&sb, "json", relay.Region(rc, relay.Node(context.Background(), rc, relay.Addrs{}, pin))); err != nil {
		t.Fatal(err)
	}
	var dm tailcfg.DERPMap
	if err := json.Unmarshal([]byte(sb.String()), &dm); err != nil {
		t.Fatalf("derpmap json: %v\n%s", err, sb.String())
	}
	for _, r := range dm.Regions {
		return r
	}
	t.Fatalf("derpmap has no region:\n%s", sb.String())
	return nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

const selfSignedYAML = `
relay:
  hostname: 127.0.0.1
  listen: 127.0.0.1:0
  stun_listen: ""
  tls: {mode: self-signed}
`

func TestTailscaleClients(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	derptest.Run(t, region)
	if n := r.DERP().Stats().FastStarts.Load(); n == 0 {
		t.Errorf("no client used fast start (TLS 1.3 + meta cert)")
	}
	if n := r.DERP().Stats().WebSocketAccepts.Load(); n == 0 {
		t.Errorf("no websocket connection was counted")
	}
}

func TestHTTPEndpoints(t *testing.T) {
	_, region := startRelay(t, selfSignedYAML)
	node := region.Nodes[0]
	hc := derptest.HTTPClient(node)
	base := derptest.URL(node)
	get := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/derp/probe", "/derp/latency-check"} {
		if r := get("GET", p, nil); r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: %d", p, r.StatusCode)
		}
		if r := get("HEAD", p, nil); r.StatusCode != 200 {
			t.Errorf("HEAD %s: %d", p, r.StatusCode)
		}
		if r := get("POST", p, nil); r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", p, r.StatusCode)
		}
	}
	r := get("GET", "/generate_204", map[string]string{"X-Tailscale-Challenge": "ts_127.0.0.1"})
	if r.StatusCode != 204 || r.Header.Get("X-Tailscale-Response") != "response ts_127.0.0.1" {
		t.Errorf("generate_204: %d %q", r.StatusCode, r.Header.Get("X-Tailscale-Response"))
	}
	r = get("GET", "/generate_204", map[string]string{"X-Tailscale-Challenge": "bad challenge!"})
	if r.StatusCode != 204 || r.Header.Get("X-Tailscale-Response") != "" {
		t.Errorf("generate_204 with a malformed challenge echoed it")
	}
	if r := get("GET", "/derp", nil); r.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("GET /derp without upgrade: %d, want 426", r.StatusCode)
	}
	if r := get("GET", "/robots.txt", nil); r.StatusCode != 200 {
		t.Errorf("robots.txt: %d", r.StatusCode)
	}
	if r := get("GET", "/", nil); r.StatusCode != 200 || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("home: %d", r.StatusCode)
	}
	if r := get("GET", "/nope", nil); r.StatusCode != 404 {
		t.Errorf("unknown path: %d", r.StatusCode)
	}

	// HTTP/2 must never be negotiated: DERP is an HTTP/1.1 upgrade.
	cfg := derptest.TLSConfig(node, nil)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	conn, err := tls.Dial("tcp", base[len("https://"):], cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Errorf("server negotiated h2")
	}
}

func TestServerKeyPersists(t *testing.T) {
	dir := t.TempDir()
	k1, err := relay.LoadOrCreateKey(dir + "/derp.key")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := relay.LoadOrCreateKey(dir + "/derp.key")
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Fatal("server key changed across loads")
	}
	st, err := os.Stat(dir + "/derp.key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
}
