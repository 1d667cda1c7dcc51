package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"tailscale.com/client/local"
)

// TailscaledDir is a short state directory for a test tailscaled (unix socket paths are
// limited to 108 bytes) and the LocalAPI socket path in it, named as tailscaled names it.
func TailscaledDir(t testing.TB) (dir, sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "er-ts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, filepath.Join(dir, "tailscaled.sock")
}

// StartTailscaled runs the real tailscaled (BuildTailscaled) in userspace-networking mode
// inside network namespace ns, with its state, logs and socket in dir (from TailscaledDir),
// and waits for its LocalAPI. It is stopped when the test ends; its log is shown if the
// test failed.
func StartTailscaled(t testing.TB, ns, dir string) *local.Client {
	t.Helper()
	return RunTailscaled(t, ns, dir).Client
}

// Tailscaled is a test tailscaled that a test can stop before it ends.
type Tailscaled struct {
	*local.Client
	cmd  *exec.Cmd
	logf *os.File
	once sync.Once
}

// Stop ends tailscaled (SIGTERM, which removes its socket; SIGKILL if it has not exited
// after 20 s) and waits for it.
func (ts *Tailscaled) Stop() {
	ts.once.Do(func() {
		ts.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { ts.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			fmt.Fprintf(ts.logf, "edgerelay test: tailscaled did not exit 20s after SIGTERM; killing it\n")
			ts.cmd.Process.Kill()
			<-done
		}
		ts.logf.Close()
	})
}

// RunTailscaled is StartTailscaled with extra environment (KEY=value, e.g. tailscaled's
// TS_DEBUG_* knobs) and a handle to stop it.
func RunTailscaled(t testing.TB, ns, dir string, env ...string) *Tailscaled {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "go")
	ip := RequireCommand(t, "ip")
	bin, err := BuildTailscaled()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tailscaled.sock")
	logPath := filepath.Join(dir, "tailscaled.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ip, "netns", "exec", ns, bin, "--tun=userspace-networking", "--statedir="+dir,
		"--socket="+sock, "--no-logs-no-support", "--port=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), "TS_LOGS_DIR="+dir), env...) // not /var/lib/tailscale on the host
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ts := &Tailscaled{Client: &local.Client{Socket: sock, UseSocketOnly: true}, cmd: cmd, logf: logf}
	t.Cleanup(func() {
		ts.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("tailscaled log (tail):\n%s", b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := ts.StatusWithoutPeers(ctx)
		cancel()
		if err == nil {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("tailscaled LocalAPI not up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CurrentNetNS is the namespace InNetNS runs this test process in ("" outside one).
func CurrentNetNS() string { return os.Getenv(netnsEnv) }
