// Package testenv holds helpers for tests that need root, network namespaces or real
// servers. Such tests skip on a developer laptop, but under CI=true a skip is a failure:
// CI must run them.
package testenv

import (
	"os"
	"os/exec"
	"testing"
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
