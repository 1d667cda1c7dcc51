package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tailscale.com/client/local"
)

// TailscaledDir is a short state directory for a test tailscaled (unix socket paths are
// limited to 108 bytes) and the LocalAPI socket path in it.
func TailscaledDir(t testing.TB) (dir, sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "er-ts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, filepath.Join(dir, "ts.sock")
}

// StartTailscaled runs the real tailscaled (BuildTailscaled) in userspace-networking mode
// inside network namespace ns, with its state, logs and socket in dir (from TailscaledDir),
// and waits for its LocalAPI. It is stopped when the test ends; its log is shown if the
// test failed.
func StartTailscaled(t testing.TB, ns, dir string) *local.Client {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "go")
	ip := RequireCommand(t, "ip")
	bin, err := BuildTailscaled()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ts.sock")
	logPath := filepath.Join(dir, "tailscaled.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ip, "netns", "exec", ns, bin, "--tun=userspace-networking", "--statedir="+dir,
		"--socket="+sock, "--no-logs-no-support", "--port=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "TS_LOGS_DIR="+dir) // not /var/lib/tailscale on the host
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
