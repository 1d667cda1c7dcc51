package testenv

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// headscaleModule is the import path of headscale's command in the tools module under
// testdata/headscale: a Go module of its own, so headscale's tailscale.com version never
// touches edgerelay's go.mod, and headscale never reaches the shipped binary.
const headscaleModule = "github.com/juanfont/headscale/cmd/headscale"

var headscaleBuild = sync.OnceValues(func() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the testenv package source")
	}
	modDir := filepath.Join(filepath.Dir(self), "testdata", "headscale")
	dir, err := toolDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, path.Base(headscaleModule))
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, headscaleModule)
	cmd.Dir = modDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %v\n%s", headscaleModule, modDir, err, out)
	}
	fmt.Fprintf(os.Stderr, "built headscale in %v\n", time.Since(start).Round(time.Millisecond))
	return bin, nil
})

// BuildHeadscale builds the real headscale control server (test-only) once per test process
// and returns its path. Call it before InNetNS too: the module download and most of the
// build then happen once, in the host namespace.
func BuildHeadscale(t testing.TB) string {
	t.Helper()
	RequireCommand(t, "go")
	bin, err := headscaleBuild()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Headscale is a running headscale serving plain HTTP on loopback of the current network
// namespace (Tailscale clients speak Noise over it, as with any control URL).
type Headscale struct {
	URL string // http://127.0.0.1:port: the control URL and /verify

	bin, config string
	log         *LockedBuffer
}

// HeadscaleOptions configure StartHeadscale.
type HeadscaleOptions struct {
	// Port is the listen port on 127.0.0.1 (0: a free one).
	Port int
	// DERPURLs are headscale's derp.urls; they are fetched at start and every
	// UpdateFrequency (auto update on).
	DERPURLs        []string
	UpdateFrequency time.Duration
	// Env is added to headscale's environment (e.g. SSL_CERT_FILE for a test CA).
	Env []string
}

// StartHeadscale runs headscale with a fresh SQLite database and no policy (everyone may
// reach everyone), and waits until it answers. It is stopped when the test ends; its log
// is shown if the test failed.
func StartHeadscale(t testing.TB, bin string, opts HeadscaleOptions) *Headscale {
	t.Helper()
	if os.Getenv(netnsEnv) == "" {
		t.Fatal("StartHeadscale listens on loopback ports: call it only inside InNetNS")
	}
	dir, err := os.MkdirTemp("", "er-hs") // short: headscale's unix socket lives here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, grpcPort, metricsPort := opts.Port, FreePort(t, "tcp"), FreePort(t, "tcp")
	if port == 0 {
		port = FreePort(t, "tcp")
	}
	h := &Headscale{URL: fmt.Sprintf("http://127.0.0.1:%d", port), bin: bin, config: filepath.Join(dir, "config.yaml"), log: &LockedBuffer{}}
	freq := opts.UpdateFrequency
	if freq == 0 {
		freq = time.Minute
	}
	var urls strings.Builder
	for _, u := range opts.DERPURLs {
		fmt.Fprintf(&urls, "\n    - %s", strconv.Quote(u))
	}
	cfg := fmt.Sprintf(`server_url: %s
listen_addr: 127.0.0.1:%d
metrics_listen_addr: 127.0.0.1:%d
grpc_listen_addr: 127.0.0.1:%d
grpc_allow_insecure: false
disable_check_updates: true
noise:
  private_key_path: %s/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: false
  urls:%s
  paths: []
  auto_update_enabled: true
  update_frequency: %s
database:
  type: sqlite
  sqlite:
    path: %s/db.sqlite
log:
  level: info
policy:
  mode: file
  path: ""
dns:
  magic_dns: false
  base_domain: hs.test
  override_local_dns: false
unix_socket: %s/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
`, h.URL, port, metricsPort, grpcPort, dir, urls.String(), freq, dir, dir)
	if err := os.WriteFile(h.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", h.config)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	cmd.Env = append(os.Environ(), opts.Env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("headscale log:\n%s", tail(h.log.String(), 6000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("headscale exited at start:\n%s", tail(h.log.String(), 6000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("headscale not listening after 60s:\n%s", tail(h.log.String(), 6000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h
}

// CLI runs a headscale command against this server (over its unix socket) with JSON output
// and decodes it into v.
func (h *Headscale) CLI(t testing.TB, v any, args ...string) {
	t.Helper()
	out, err := exec.Command(h.bin, append(append([]string{"-c", h.config}, args...), "-o", "json")...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("headscale %v: %v\n%s%s", args, err, out, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("headscale %v: %v\n%s", args, err, out)
	}
}

// PreAuthKey creates a user and a reusable pre-auth key for it.
func (h *Headscale) PreAuthKey(t testing.TB, user string) string {
	t.Helper()
	var u struct {
		ID json.Number `json:"id"`
	}
	h.CLI(t, &u, "users", "create", user)
	var k struct {
		Key string `json:"key"`
	}
	h.CLI(t, &k, "preauthkeys", "create", "--user", u.ID.String(), "--reusable", "--expiration", "1h")
	if k.Key == "" {
		t.Fatal("headscale made an empty pre-auth key")
	}
	return k.Key
}

// Log is what headscale printed so far.
func (h *Headscale) Log() string { return h.log.String() }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ServerCert makes a test CA and a certificate it signed for name and ip; PEM each.
func ServerCert(t testing.TB, name string, ip net.IP) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	return serverCert(t, name, ip)
}
