// Package testenv holds helpers for tests that need root, network namespaces or real
// servers. Such tests skip on a developer laptop, but under CI=true a skip is a failure:
// CI must run them.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// CI reports whether the tests run under CI, where integration tests may not skip.
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with reason, or fails it under CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("integration test cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under CI) when the test does not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// RequireCommand skips (or fails under CI) when a program is not on PATH and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, name+" not installed (make test installs it)")
	}
	return p
}

// WaitFor polls cond until it holds or limit passes (then the test fails) and returns how
// long it took. Tests wait for outcomes; they never assert on the time.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// FreePort returns a loopback port ("tcp" or "udp") that was free a moment ago.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// IP runs `ip args…` in the current network namespace (use InNetNS first) and fails the
// test if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(RequireCommand(t, "ip"), args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// LockedBuffer is a bytes.Buffer safe for a process writing and a test reading at once.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
