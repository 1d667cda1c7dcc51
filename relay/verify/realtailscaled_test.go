package verify

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tailscale.com/client/local"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestMain removes the tailscaled built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.CleanupTools()
	os.Exit(code)
}

// tailscaledStateDir is a short state directory (unix socket paths are limited to 108 bytes)
// and the socket path in it.
func tailscaledStateDir(t *testing.T) (dir, sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "erv-ts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, filepath.Join(dir, "ts.sock")
}

// realTailscaled runs the real tailscaled in userspace-networking mode inside a network
// namespace holding only loopback (so it can reach nothing), with its state and socket in
// dir (from tailscaledStateDir), and waits for its LocalAPI.
func realTailscaled(t *testing.T, ns, dir string) *local.Client {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "go")
	testenv.RequireCommand(t, "ip")
	bin, err := testenv.BuildTailscaled()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ts.sock")
	logPath := filepath.Join(dir, "tailscaled.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "--tun=userspace-networking", "--statedir="+dir,
		"--socket="+sock, "--no-logs-no-support", "--port=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "TS_LOGS_DIR="+dir) // not /var/lib/tailscale
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("tailscaled log (tail):\n%s", b)
		}
	})
	lc := &local.Client{Socket: sock, UseSocketOnly: true}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := lc.StatusWithoutPeers(ctx)
		cancel()
		if err == nil {
			return lc
		}
		if time.Now().After(deadline) {
			t.Fatalf("tailscaled LocalAPI not up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newNetns adds a network namespace with loopback up, removed when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	ns := "erv" + rand.Text()[:8]
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	return ns
}

// fakeUplink gives namespace ns a default route over a veth pair whose both ends stay in ns
// (the gateway never answers, so nothing leaves), so tailscaled sees a network that is up
// and does not pause its control client.
func fakeUplink(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", "up0", "type", "veth", "peer", "name", "up1"},
		{"addr", "add", "10.99.0.2/24", "dev", "up0"},
		{"link", "set", "up0", "up"},
		{"link", "set", "up1", "up"},
		{"route", "add", "default", "via", "10.99.0.1", "dev", "up0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
	}
}

// TestRealTailscaledWhois asks a real, logged-out tailscaled v1.102.0 (no netmap): our
// request is what its LocalAPI expects (a nodekey-capable whois answers 404, not 400), and
// the refusal says the key is not in the netmap. Tailscale's own LocalAPI client gets the
// same answer.
func TestRealTailscaledWhois(t *testing.T) {
	ns := newNetns(t)
	dir, sock := tailscaledStateDir(t)
	lc := realTailscaled(t, ns, dir)
	v := newSocketVerifier(t, sock)
	ctx := context.Background()
	if err := v.Preflight(ctx); err != nil {
		t.Fatalf("preflight against the real tailscaled: %v", err)
	}
	k := randomKey(t)
	start := time.Now()
	err := v.Check(ctx, k, src1)
	t.Logf("real tailscaled: %v (in %v)", err, time.Since(start).Round(time.Microsecond))
	if !errors.Is(err, ErrNotInNetmap) {
		t.Fatalf("got %v, want ErrNotInNetmap", err)
	}
	if _, err := lc.WhoIsNodeKey(ctx, tsKey(k)); !errors.Is(err, local.ErrPeerNotFound) {
		t.Fatalf("tailscale's LocalAPI client: %v, want ErrPeerNotFound (both must agree)", err)
	}
	if st := v.Stats(); st.Tailscaled.Refused != 1 || st.Tailscaled.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}
