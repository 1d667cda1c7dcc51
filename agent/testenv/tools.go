package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"time"
)

// Go programs the tests drive (tailscaled) are built once per test process into one
// temporary directory; a package's TestMain calls CleanupTools when its tests end.
var (
	toolDir    = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "edgerelay-tools") })
	toolBuilds sync.Map // import path → func() (string, error)
)

// BuildTool builds the main package importPath (a dependency in go.mod) once and returns the
// binary's path.
func BuildTool(importPath string) (string, error) {
	f, _ := toolBuilds.LoadOrStore(importPath, sync.OnceValues(func() (string, error) {
		dir, err := toolDir()
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, path.Base(importPath))
		start := time.Now()
		if out, err := exec.Command("go", "build", "-o", bin, importPath).CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", importPath, err, out)
		}
		fmt.Fprintf(os.Stderr, "built %s in %v\n", path.Base(importPath), time.Since(start).Round(time.Millisecond))
		return bin, nil
	}))
	return f.(func() (string, error))()
}

// BuildTailscaled builds the real tailscaled from the tailscale.com module (test-only).
func BuildTailscaled() (string, error) { return BuildTool("tailscale.com/cmd/tailscaled") }

// CleanupTools removes the binaries BuildTool made.
func CleanupTools() {
	if dir, err := toolDir(); err == nil {
		os.RemoveAll(dir)
	}
}
