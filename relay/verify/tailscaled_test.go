package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// localAPI stands in for tailscaled's LocalAPI on a unix socket. Its whois handler follows
// tailscaled v1.102.0 (ipn/localapi serveWhoIsWithBackend): a nodekey: addr is looked up in
// the netmap, 200 with an apitype.WhoIsResponse, 404 "no match for IP:port" when unknown, 400
// "invalid nodekey in 'addr' parameter" for a bad key. mode "old" is a tailscaled from before
// whois by node key, which parsed addr as ip:port only and answered 400 "invalid 'addr'
// parameter" (tailscale#12617).
type localAPI struct {
	socket string
	mode   string // "", "old", "denied", "broken", "wrong-key", "hang"
	hang   chan struct{}
	srv    *http.Server

	mu    sync.Mutex
	nodes map[key.NodePublic]string // node key → name
	hosts []string
	caps  []string
}

func newLocalAPI(t testing.TB, mode string) *localAPI {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; test temp dirs can be longer.
	dir, err := os.MkdirTemp("", "erv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return serveLocalAPI(t, filepath.Join(dir, "tailscaled.sock"), mode)
}

// serveLocalAPI serves the stand-in at socket until stop or the test's end.
func serveLocalAPI(t testing.TB, socket, mode string) *localAPI {
	t.Helper()
	l := &localAPI{socket: socket, mode: mode, nodes: map[key.NodePublic]string{}, hang: make(chan struct{})}
	ln, err := net.Listen("unix", l.socket)
	if err != nil {
		t.Fatal(err)
	}
	l.srv = &http.Server{Handler: l}
	go l.srv.Serve(ln)
	t.Cleanup(l.stop)
	return l
}

// stop closes the listener (removing the socket file), as tailscaled does when it exits.
func (l *localAPI) stop() {
	select {
	case <-l.hang:
	default:
		close(l.hang)
	}
	l.srv.Close()
}

func (l *localAPI) add(k [32]byte, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[tsKey(k)] = name
}

func (l *localAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.hosts = append(l.hosts, r.Host)
	l.caps = append(l.caps, r.Header.Get("Tailscale-Cap"))
	l.mu.Unlock()
	if r.URL.Path != "/localapi/v0/whois" {
		http.NotFound(w, r)
		return
	}
	switch l.mode {
	case "denied":
		http.Error(w, "whois access denied", http.StatusForbidden)
		return
	case "broken":
		http.Error(w, "backend in a bad state", http.StatusInternalServerError)
		return
	case "hang":
		<-l.hang
		return
	}
	v := r.FormValue("addr")
	if v == "" {
		http.Error(w, "missing 'addr' parameter", http.StatusBadRequest)
		return
	}
	if l.mode == "old" || !strings.HasPrefix(v, "nodekey:") {
		if _, err := netip.ParseAddrPort(v); err != nil {
			http.Error(w, "invalid 'addr' parameter", http.StatusBadRequest)
			return
		}
		http.Error(w, "no match for IP:port", http.StatusNotFound)
		return
	}
	var k key.NodePublic
	if err := k.UnmarshalText([]byte(v)); err != nil {
		http.Error(w, "invalid nodekey in 'addr' parameter", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	name, ok := l.nodes[k]
	l.mu.Unlock()
	if !ok {
		http.Error(w, "no match for IP:port", http.StatusNotFound)
		return
	}
	if l.mode == "wrong-key" {
		k = key.NewNode().Public()
	}
	res := &apitype.WhoIsResponse{
		Node:        &tailcfg.Node{ID: 7, Key: k, Name: name, Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32")}},
		UserProfile: &tailcfg.UserProfile{ID: 1, LoginName: "someone@example.com"},
		CapMap:      tailcfg.PeerCapMap{},
	}
	j, _ := json.MarshalIndent(res, "", "\t")
	w.Header().Set("Content-Type", "application/json")
	w.Write(j)
}

func newSocketVerifier(t *testing.T, socket string, opts ...Option) *Verifier {
	t.Helper()
	v, err := New(Config{TailscaledSocket: socket}, testLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTailscaledWhois(t *testing.T) {
	l := newLocalAPI(t, "")
	member := randomKey(t)
	l.add(member, "laptop.example.ts.net.")
	v := newSocketVerifier(t, l.socket)
	ctx := context.Background()

	if err := v.Check(ctx, member, src1); err != nil {
		t.Fatalf("node in the netmap refused: %v", err)
	}
	err := v.Check(ctx, randomKey(t), src1)
	if !errors.Is(err, ErrNotInNetmap) || !strings.Contains(err.Error(), "not found in the local tailscaled's netmap") {
		t.Fatalf("unknown key: %v", err)
	}
	t.Logf("refusal: %v", err)
	if err := v.Preflight(ctx); err != nil {
		t.Errorf("preflight: %v", err)
	}
	st := v.Stats()
	if st.Tailscaled != (CheckStats{Admitted: 1, Refused: 1}) || st.LastError != "" {
		t.Errorf("stats %+v", st)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.hosts {
		if l.hosts[i] != "local-tailscaled.sock" || l.caps[i] != "142" {
			t.Errorf("request %d: Host %q, Tailscale-Cap %q; the LocalAPI client sends local-tailscaled.sock and 142", i, l.hosts[i], l.caps[i])
		}
	}
}

// TestTailscaledCapVersion keeps the Tailscale-Cap we send equal to the one tailscale.com's
// LocalAPI client sends, so a module upgrade shows up here.
func TestTailscaledCapVersion(t *testing.T) {
	if capabilityVersion != int(tailcfg.CurrentCapabilityVersion) {
		t.Fatalf("capabilityVersion %d, tailcfg.CurrentCapabilityVersion %d", capabilityVersion, tailcfg.CurrentCapabilityVersion)
	}
}

func TestTailscaledFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("too old", func(t *testing.T) {
		l := newLocalAPI(t, "old")
		v := newSocketVerifier(t, l.socket)
		err := v.Check(ctx, randomKey(t), src1)
		if !errors.Is(err, ErrTailscaledTooOld) {
			t.Fatalf("got %v", err)
		}
		if !strings.Contains(err.Error(), "tailscaled is too old to look up node keys (needs a version that supports whois by node key)") {
			t.Errorf("message: %v", err)
		}
		if err := v.Preflight(ctx); !errors.Is(err, ErrTailscaledTooOld) {
			t.Errorf("preflight: %v", err)
		}
		if st := v.Stats(); st.Tailscaled.Errors != 1 || !strings.Contains(st.LastError, "too old") {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("socket missing", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "nope.sock")
		v := newSocketVerifier(t, sock)
		err := v.Check(ctx, randomKey(t), src1)
		if !errors.Is(err, ErrNoTailscaled) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
		if err := v.Preflight(ctx); !errors.Is(err, ErrNoTailscaled) {
			t.Errorf("preflight: %v", err)
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		dir, _ := os.MkdirTemp("", "erv")
		defer os.RemoveAll(dir)
		sock := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false) // a stale socket file, as after a tailscaled crash
		ln.Close()
		v := newSocketVerifier(t, sock)
		err = v.Check(ctx, randomKey(t), src1)
		if !errors.Is(err, ErrNoTailscaled) || !strings.Contains(err.Error(), "nothing listens on socket "+sock) {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("not a socket", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o600)
		err := newSocketVerifier(t, f).Check(ctx, randomKey(t), src1)
		if !errors.Is(err, ErrNoTailscaled) || !strings.Contains(err.Error(), f+" is not a unix socket") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("access denied", func(t *testing.T) {
		l := newLocalAPI(t, "denied")
		err := newSocketVerifier(t, l.socket).Check(ctx, randomKey(t), src1)
		if err == nil || !strings.Contains(err.Error(), "denied whois") || !strings.Contains(err.Error(), "operator") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("other status", func(t *testing.T) {
		l := newLocalAPI(t, "broken")
		err := newSocketVerifier(t, l.socket).Check(ctx, randomKey(t), src1)
		if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") || !strings.Contains(err.Error(), "backend in a bad state") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("answer about another key", func(t *testing.T) {
		l := newLocalAPI(t, "wrong-key")
		k := randomKey(t)
		l.add(k, "x")
		err := newSocketVerifier(t, l.socket).Check(ctx, k, src1)
		if err == nil || !strings.Contains(err.Error(), "whois answered for node key") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("hangs", func(t *testing.T) {
		l := newLocalAPI(t, "hang")
		start := time.Now()
		err := newSocketVerifier(t, l.socket, WithTimeout(200*time.Millisecond)).Check(ctx, randomKey(t), src1)
		if err == nil || !strings.Contains(err.Error(), "did not answer whois within 200ms") {
			t.Fatalf("got %v", err)
		}
		t.Logf("%v (after %v)", err, time.Since(start).Round(time.Millisecond))
	})
}
