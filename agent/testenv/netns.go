package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// netnsEnv marks a test process that InNetNS re-ran inside a network namespace.
const netnsEnv = "EDGERELAY_TEST_NETNS"

// InNetNS runs the calling top-level test inside a fresh network namespace with only a
// loopback interface, so servers it starts (BIND9 on port 53, Pebble) and addresses it adds
// never touch the host. In the host namespace it creates the namespace, re-runs this test
// binary inside it limited to this test, relays its output and verdict, and returns false:
// the caller returns at once. Inside the namespace it returns true and the test proceeds.
func InNetNS(t *testing.T) bool {
	t.Helper()
	if ns := os.Getenv(netnsEnv); ns != "" {
		return true
	}
	RequireRoot(t)
	ip := RequireCommand(t, "ip")
	ns := NewNetNS(t, ip)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, exe,
		"-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1", "-test.timeout=7m")
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("test inside network namespace %s failed: %v", ns, err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("test inside network namespace %s did not pass (skipped or not run)", ns)
	}
	return false
}

// NewNetNS creates a network namespace with a unique name, loopback up and 127.0.0.1 as its
// resolver (for `ip netns exec`), all removed when the test ends, and returns its name.
func NewNetNS(t testing.TB, ip string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "er" + hex.EncodeToString(b)
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "delete", ns).Run() })
	if out, err := exec.Command(ip, "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up in %s: %v: %s", ns, err, out)
	}
	// A new namespace copies the host's net.ipv4.ip_forward (devconf_inherit_init_net=0);
	// start from the kernel's default whatever the host has.
	if out, err := exec.Command(ip, "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward off in %s: %v: %s", ns, err, out)
	}
	// `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc: processes in the namespace
	// resolve names through 127.0.0.1 there (StartBIND9), never through the host's resolver.
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ns
}

// RunInNetNS runs f on an OS thread switched into the named network namespace (made by
// NewNetNS), for opening sockets there: a socket stays in the namespace it was made in. The
// thread stays locked and dies with its goroutine, so nothing else ever runs in ns by
// accident.
func RunInNetNS(ns string, f func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}
