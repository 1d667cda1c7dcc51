package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// MainPackage is the command every package ships.
const MainPackage = "./cmd/edgerelay"

// BinaryName is the file name of t's binary in dist/.
func BinaryName(t Target) string { return "edgerelay-linux-" + t.Name }

// SizeBudget is the largest binary design.md allows (stripped linux/mipsle softfloat).
const SizeBudget = 10_000_000

// CrossBuild compiles mainPkg (relative to the module in dir) for t into out: static
// (CGO_ENABLED=0), stripped (-s -w), -trimpath, no build id, version stamped into
// main.version.
func CrossBuild(ctx context.Context, goBin, dir, mainPkg string, t Target, version, out string) error {
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+version, "-o", out, mainPkg)
	cmd.Dir = dir
	cmd.Env = append(filterEnv(os.Environ(), "GOOS", "GOARCH", "GOARM", "GOMIPS", "GO386", "GOAMD64", "CGO_ENABLED"), t.Env()...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", t.Name, err, b)
	}
	return nil
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
