package relay_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"tailscale.com/derp/derphttp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

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
	r, err := relay.New(relay.Options{Config: cfg.Relay.Config, StateDir: cfg.StateDir, Logger: log})
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
	rc := cfg.Relay.Config
	rc.Listen = r.Addr().String()
	return r, regionFromDERPMap(t, rc, r.CertPin())
}

// regionFromDERPMap renders the json derpmap format and decodes it with Tailscale's types,
// so the test proves the printed map is what clients can use.
func regionFromDERPMap(t *testing.T, rc relay.Config, pin string) *tailcfg.DERPRegion {
	t.Helper()
	var sb strings.Builder
	if err := relay.WriteDERPMap(&sb, "json", relay.Map{Region: relay.RegionOf(rc, relay.Node(context.Background(), rc, relay.Addrs{}, pin, false))}); err != nil {
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
	if r := get("GET", relay.LiveMapPath, nil); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("live map before the agent set a region: %d, want 503", r.StatusCode)
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

// TestHome: relay.home behaves like derper's --home, and nothing the public port answers
// names the product or a version (headers, pages, errors).
func TestHome(t *testing.T) {
	cases := []struct {
		listen, home string
		status       int
		body, loc    string
	}{
		{"127.0.0.1:0", "", 200, "Tailscale DERP relay", ""}, // loopback: the short page
		{"127.0.0.1:0", "blank", 200, "", ""},
		{"127.0.0.1:0", "https://example.com/about", http.StatusFound, "", "https://example.com/about"},
		{"[::]:0", "", 200, "", ""}, // reachable: blank
		{"[::]:0", "default", 200, "Tailscale DERP relay", ""},
	}
	for _, c := range cases {
		t.Run(c.listen+" "+c.home, func(t *testing.T) {
			cfg, err := config.Parse([]byte("relay: {verify_clients: {open: true}, stun_listen: \"\"}\n"), false)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Relay.Listen, cfg.Relay.Home = c.listen, c.home
			r, err := relay.New(relay.Options{Config: cfg.Relay.Config, StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			h := r.Handler()
			for _, path := range []string{"/", "/nope", "/derp", relay.LiveMapPath, "/generate_204"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				all := fmt.Sprint(rec.Header()) + rec.Body.String()
				if strings.Contains(strings.ToLower(all), "edgerelay") {
					t.Errorf("GET %s names the product: %s", path, all)
				}
				if path != "/" {
					continue
				}
				if rec.Code != c.status || (c.body == "" && c.loc == "" && rec.Body.Len() != 0) ||
					!strings.Contains(rec.Body.String(), c.body) || rec.Header().Get("Location") != c.loc {
					t.Errorf("GET /: %d %q Location %q", rec.Code, rec.Body.String(), rec.Header().Get("Location"))
				}
			}
		})
	}
	if _, err := config.Parse([]byte("relay: {home: ftp://x}\n"), false); err == nil || !strings.Contains(err.Error(), "relay.home") {
		t.Errorf("bad home: %v", err)
	}
}

// TestLiveMap: the region the agent sets is what /derpmap.json serves, as a DERP map
// Tailscale's types read; relay.live_map: false turns the path off.
func TestLiveMap(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	node := region.Nodes[0]
	hc := derptest.HTTPClient(node)
	fetch := func() (int, *tailcfg.DERPMap) {
		t.Helper()
		resp, err := hc.Get(derptest.URL(node) + relay.LiveMapPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var dm tailcfg.DERPMap
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&dm); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, &dm
	}
	for _, ip := range []string{"2001:db8::1", "2001:db8::2"} {
		r.SetRegion(relay.DERPRegion{RegionID: 900, RegionCode: "home", Nodes: []relay.DERPNode{{Name: "900a", RegionID: 900, HostName: "derp.example.com", IPv6: ip, DERPPort: 12345}}})
		code, dm := fetch()
		if code != 200 || dm.Regions[900] == nil || dm.Regions[900].Nodes[0].IPv6 != ip {
			t.Fatalf("live map: %d %+v", code, dm)
		}
	}

	off, offRegion := startRelay(t, selfSignedYAML+"  live_map: false\n")
	off.SetRegion(relay.DERPRegion{RegionID: 900})
	resp, err := derptest.HTTPClient(offRegion.Nodes[0]).Get(derptest.URL(offRegion.Nodes[0]) + relay.LiveMapPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("live_map off: %d, want 404", resp.StatusCode)
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

// TestMeshKeyAdmitsPeers: mesh peers are admitted by the mesh key alone, whatever the client
// checks say; a wrong mesh key gets no such pass.
func TestMeshKeyAdmitsPeers(t *testing.T) {
	mk := strings.Repeat("3c", 32)
	keyFile := t.TempDir() + "/mesh.key"
	if err := os.WriteFile(keyFile, []byte(mk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listed := key.NewNode()
	_, region := startRelay(t, selfSignedYAML+"  verify_clients: {allow: [\""+listed.Public().String()+"\"]}\n  mesh: {key_file: "+keyFile+"}\n")
	withMeshKey := func(hex string) func(*derphttp.Client) {
		k, err := key.ParseDERPMesh(hex)
		if err != nil {
			t.Fatal(err)
		}
		return func(c *derphttp.Client) { c.MeshKey = k }
	}
	derptest.Connect(t, region, key.NewNode(), withMeshKey(mk)) // not in allow: admitted as a peer
	derptest.Connect(t, region, listed)
	if !derptest.Refused(t, region, key.NewNode(), withMeshKey(strings.Repeat("4d", 32))) {
		t.Error("a client with the wrong mesh key was admitted")
	}
	if !derptest.Refused(t, region, key.NewNode()) {
		t.Error("a stranger was admitted")
	}
}
