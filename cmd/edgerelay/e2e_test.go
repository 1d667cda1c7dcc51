package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tailscale/hujson"
	"gopkg.in/yaml.v3"
	"tailscale.com/derp"
	"tailscale.com/net/netcheck"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/packaging"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// binPath is the edgerelay binary built once for these tests, the way `make build` builds it.
// EDGERELAY_E2E_BIN names another build instead (an older commit, for before/after figures).
var binPath string

func TestMain(m *testing.M) {
	if binPath = os.Getenv("EDGERELAY_E2E_BIN"); binPath != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "edgerelay-e2e")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "edgerelay")
	build := exec.Command("go", append(append([]string{"build"}, packaging.BuildFlags("e2e-test")...), "-o", binPath, ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as pkgbuild builds it: memory figures compare
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building edgerelay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running `edgerelay run`.
type daemon struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer // the log, also passed to t.Log
	exited chan error
}

func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stdout.String()
}

// log is what the daemon logged so far.
func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func startDaemon(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// startCmd starts cmd, which runs the daemon (possibly through exec wrappers), and kills it
// when the test ends.
func startCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{exited: make(chan error, 1), cmd: cmd}
	d.cmd.Stdout = lockedWriter{&d.mu, &d.stdout}
	d.cmd.Stderr = io.MultiWriter(testLog{t}, lockedWriter{&d.mu, &d.stderr})
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
	})
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

func edgerelay(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binPath, args...).CombinedOutput()
	return string(out), err
}

// derpMap is what `edgerelay derpmap --format json` prints for cfgPath.
func derpMap(t *testing.T, cfgPath string) *tailcfg.DERPMap {
	t.Helper()
	out, err := edgerelay(t, "derpmap", "-c", cfgPath, "--format", "json")
	if err != nil {
		t.Fatalf("derpmap: %v\n%s", err, out)
	}
	var dm tailcfg.DERPMap
	if err := json.Unmarshal([]byte(out), &dm); err != nil {
		t.Fatalf("derpmap json: %v\n%s", err, out)
	}
	return &dm
}

// TestBinaryWithTailscaleClients runs the protocol suite and Tailscale's netcheck against the
// built binary over TLS on loopback, using only the DERP map `edgerelay derpmap` printed.
func TestBinaryWithTailscaleClients(t *testing.T) {
	dir := t.TempDir()
	derpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	stunAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "udp"))
	cfgPath := filepath.Join(dir, "config.yaml")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	cfgText := fmt.Sprintf(`state_dir: %s
log_level: debug
metrics_listen: %q
relay:
  hostname: 127.0.0.1
  listen: %q
  stun_listen: %q
  region: {id: 901, code: test, name: "Test"}
  tls: {mode: self-signed}
`, filepath.Join(dir, "state"), metricsAddr, derpAddr, stunAddr)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := edgerelay(t, "check", "-c", cfgPath); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	dm := derpMap(t, cfgPath)
	region := dm.Regions[901]
	if region == nil || len(region.Nodes) != 1 || !strings.HasPrefix(region.Nodes[0].CertName, "sha256-raw:") {
		t.Fatalf("derpmap region: %+v", region)
	}

	d := startDaemon(t, nil, "-c", cfgPath)
	waitTCP(t, derpAddr)
	derptest.Run(t, region)

	t.Run("netcheck over STUN", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := &netcheck.Client{NetMon: netmon.NewStatic(), Logf: t.Logf, SkipExternalNetwork: true}
		if err := c.Standalone(ctx, "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		r, err := c.GetReport(ctx, dm, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !r.UDP || r.PreferredDERP != 901 {
			t.Fatalf("netcheck: UDP=%v preferred=%d latency=%v", r.UDP, r.PreferredDERP, r.RegionLatency)
		}
	})

	t.Run("status and metrics", func(t *testing.T) {
		a := derptest.Connect(t, region, key.NewNode())
		out, err := edgerelay(t, "status", "-c", cfgPath)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		for _, want := range []string{"part relay", "running", "clients ", "relayed", "stun:", "memory:"} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "WARNING") {
			t.Errorf("a loopback-only relay got an open-relay warning:\n%s", out)
		}
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"derp_current_connections ", "derp_packets_sent ", `derp_packets_dropped{reason="queue_head"}`,
			`derp_packets_dropped{reason="total_queue_bytes"}`, "derp_queued_bytes_limit ", "tls_listener_pending_connections ",
			`tls_listener_connections{outcome="admitted"}`, `stun_counter_requests{disposition="success"}`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		if strings.Contains(string(body), "derp_packets_sent 0\n") {
			t.Error("metrics say no packet was relayed")
		}
		a.Client.Close()
	})

	t.Run("SIGHUP reload keeps serving", func(t *testing.T) {
		a := derptest.Connect(t, region, key.NewNode())
		os.WriteFile(cfgPath, []byte(strings.Replace(cfgText, "log_level: debug", "log_level: info", 1)), 0o600)
		d.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(300 * time.Millisecond) // give the reload a moment; correctness is checked below
		b := derptest.Connect(t, region, key.NewNode())
		b.Send(a.Pub(), []byte("after reload"))
		a.ExpectPacket(b.Pub(), []byte("after reload"))
	})

	t.Run("SIGTERM tells clients and exits", func(t *testing.T) {
		a := derptest.Connect(t, region, key.NewNode())
		d.stop(t)
		for m := range a.Msgs {
			if _, ok := m.(derp.ServerRestartingMessage); ok {
				return
			}
		}
		t.Fatal("connection closed without a Restarting frame")
	})
}

// TestDefaultRun is a new user's first run: no config at all. The daemon prints the DERP map
// to paste, and a Tailscale client connects using only that.
func TestDefaultRun(t *testing.T) {
	for _, p := range []string{"/etc/config/edgerelay", "/etc/edgerelay/config.yaml"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists on this machine; the default run would use it", p)
		}
	}
	if c, err := net.Dial("tcp", "127.0.0.1:12345"); err == nil {
		c.Close()
		t.Skip("port 12345 is taken on this machine")
	}
	d := startDaemon(t, []string{"EDGERELAY_STATE_DIR=" + t.TempDir()})
	var printed struct {
		DERPMap tailcfg.DERPMap `json:"derpMap"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := d.output()
		if i := strings.Index(out, "{"); i >= 0 && json.Unmarshal([]byte(out[i:]), &printed) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DERP map printed; stdout:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var region *tailcfg.DERPRegion
	for _, r := range printed.DERPMap.Regions {
		region = r
	}
	if region == nil {
		t.Fatalf("printed map has no region:\n%s", d.output())
	}
	a, b := derptest.Connect(t, region, key.NewNode()), derptest.Connect(t, region, key.NewNode())
	a.Send(b.Pub(), []byte("first run"))
	b.ExpectPacket(a.Pub(), []byte("first run"))
	d.stop(t)
}

// TestDERPMapFormats checks each output format against what its consumer parses.
func TestDERPMapFormats(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: %s
relay:
  hostname: 203.0.113.7
  listen: ":443"
  stun_listen: ""
  ipv6: "2001:db8::7"
  region: {id: 950, code: nas, name: "Parents' NAS"}
  tls: {mode: self-signed}
`, dir)), 0o600)
	check := func(t *testing.T, r *tailcfg.DERPRegion) {
		t.Helper()
		if r == nil || r.RegionID != 950 || r.RegionCode != "nas" || r.RegionName != "Parents' NAS" || len(r.Nodes) != 1 {
			t.Fatalf("region %+v", r)
		}
		n := r.Nodes[0]
		if n.RegionID != 950 || n.HostName != "203.0.113.7" || n.IPv4 != "203.0.113.7" || n.IPv6 != "2001:db8::7" ||
			n.STUNPort != -1 || (n.DERPPort != 443 && n.DERPPort != 0) || !strings.HasPrefix(n.CertName, "sha256-raw:") {
			t.Fatalf("node %+v", n)
		}
	}
	t.Run("tailscale", func(t *testing.T) {
		// The policy file is HuJSON: the map's notes are // comments.
		out, err := edgerelay(t, "derpmap", "-c", cfgPath)
		if err != nil {
			t.Fatal(err, out)
		}
		if !strings.HasPrefix(out, "// IP-only: ") {
			t.Errorf("no IP-only note:\n%s", out)
		}
		std, err := hujson.Standardize([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		var acl struct {
			DERPMap tailcfg.DERPMap `json:"derpMap"`
		}
		if err := json.Unmarshal(std, &acl); err != nil {
			t.Fatal(err)
		}
		check(t, acl.DERPMap.Regions[950])
	})
	t.Run("json", func(t *testing.T) {
		out, _ := edgerelay(t, "derpmap", "-c", cfgPath, "--format", "json")
		var dm tailcfg.DERPMap
		if err := json.Unmarshal([]byte(out), &dm); err != nil {
			t.Fatal(err)
		}
		check(t, dm.Regions[950])
	})
	for _, format := range []string{"yaml", "headscale"} {
		t.Run(format, func(t *testing.T) {
			// headscale reads derp.paths files with yaml.v3 straight into tailcfg.DERPMap.
			// Self-signed: headscale could not fetch the live map, so headscale prints the file too.
			out, _ := edgerelay(t, "derpmap", "-c", cfgPath, "--format", format)
			var dm tailcfg.DERPMap
			if err := yaml.Unmarshal([]byte(out), &dm); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			check(t, dm.Regions[950])
			if format == "headscale" && !strings.Contains(out, "# headscale fetches derp.urls over HTTPS and would not trust") {
				t.Errorf("no note on the self-signed certificate:\n%s", out)
			}
		})
	}
	t.Run("headscale live map", func(t *testing.T) {
		manual := filepath.Join(dir, "manual.yaml")
		crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
		os.WriteFile(crt, nil, 0o600)
		os.WriteFile(key, nil, 0o600)
		os.WriteFile(manual, []byte(fmt.Sprintf("state_dir: %s\nrelay:\n  hostname: derp.example.com\n  listen: \":8443\"\n  tls: {mode: manual, cert_file: %s, key_file: %s}\n", dir, crt, key)), 0o600)
		out, err := edgerelay(t, "derpmap", "-c", manual, "--format", "headscale")
		if err != nil {
			t.Fatal(err, out)
		}
		var hs struct {
			DERP struct {
				URLs            []string `yaml:"urls"`
				AutoUpdate      bool     `yaml:"auto_update_enabled"`
				UpdateFrequency string   `yaml:"update_frequency"`
			} `yaml:"derp"`
		}
		if err := yaml.Unmarshal([]byte(out), &hs); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(hs.DERP.URLs) != 1 || hs.DERP.URLs[0] != "https://derp.example.com:8443/derpmap.json" || !hs.DERP.AutoUpdate {
			t.Fatalf("headscale snippet:\n%s", out)
		}
		if _, err := time.ParseDuration(hs.DERP.UpdateFrequency); err != nil {
			t.Errorf("update_frequency: %v", err)
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		if out, err := edgerelay(t, "derpmap", "-c", cfgPath, "--format", "xml"); err == nil || !strings.Contains(out, "tailscale, json, yaml, headscale") {
			t.Fatalf("want an error listing formats, got %v: %s", err, out)
		}
	})
}

// TestCheckReportsEveryProblem: `check` lists every problem with its line, exit status 1.
func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("relay:\n  listen: nope\n  colour: blue\nsubnet:\n  firewall: pf\n"), 0o600)
	out, err := edgerelay(t, "check", "-c", bad)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1", err)
	}
	for _, want := range []string{"line 2: relay.listen", "line 3: relay.colour: unknown key", "line 5: subnet.firewall"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	uci := filepath.Join(dir, "edgerelay")
	os.WriteFile(uci, []byte("config relay 'relay'\n\toption listen 'nope'\n\toption colour 'blue'\n"), 0o600)
	out, _ = edgerelay(t, "check", "-c", uci)
	for _, want := range []string{"line 2: relay.listen", "line 3: relay.colour: unknown option"} {
		if !strings.Contains(out, want) {
			t.Errorf("UCI output lacks %q:\n%s", want, out)
		}
	}
}
