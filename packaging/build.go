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

// SizeBudget is the largest binary design.md allows: 10 MiB for the stripped binary of
// SizeBudgetTarget (16 MB-flash MT7621/MT76x8 routers).
const SizeBudget = 10 << 20

// SizeBudgetTarget names the target SizeBudget applies to.
const SizeBudgetTarget = "mipsle-softfloat"

// BuildFlags are the `go build` flags of every shipped binary (and of the binaries the tests
// run), so what is measured and tested is what ships:
//   - static and stripped, -trimpath, no build id, version stamped into main.version;
//   - nethttpomithttp2: DERP is HTTP/1.1, net/http's bundled HTTP/2 is dead weight;
//   - no inlining except on the relay's packet path (our relay packages, runtime, TLS and
//     its ciphers, bufio, sync, the poller) and math/bits: inlining everywhere costs about
//     1.2 MB on mipsle, which the 10 MiB budget cannot carry, and buys nothing off the hot
//     path. math/bits is there because on 32-bit MIPS its helpers are calls, not
//     instructions, and ChaCha20-Poly1305 (TLS without AES instructions) calls them per
//     word: inlined, the emulated mipsle relay delivers about 1.3x as many packets for 44
//     bytes. Other packages measured (byte order, crypto/cipher, crypto/internal/..., net,
//     syscall, time, sync/..., internal/..., x/crypto) cost up to 300 KB and gave nothing
//     measurable on top (README, Performance).
func BuildFlags(version string) []string {
	flags := []string{"-trimpath", "-buildvcs=false", "-tags", "nethttpomithttp2",
		"-ldflags", "-s -w -buildid= -X main.version=" + version, "-gcflags=all=-l"}
	for _, p := range inlinedPackages {
		flags = append(flags, "-gcflags="+p+"=")
	}
	return flags
}

var inlinedPackages = []string{
	"github.com/edgerelay/edgerelay/relay/...", "runtime", "sync", "bufio", "internal/poll",
	"crypto/tls", "crypto/internal/fips140/aes/...", "crypto/internal/fips140/subtle",
	"vendor/golang.org/x/crypto/chacha20...", "vendor/golang.org/x/crypto/internal/poly1305",
	"math/bits",
}

// CrossBuild compiles mainPkg (relative to the module in dir) for t into out with
// BuildFlags.
func CrossBuild(ctx context.Context, goBin, dir, mainPkg string, t Target, version, out string) error {
	args := append(append([]string{"build"}, BuildFlags(version)...), "-o", out, mainPkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(filterEnv(os.Environ(), "GOOS", "GOARCH", "GOARM", "GOARM64", "GOMIPS", "GO386", "GOAMD64", "GORISCV64", "CGO_ENABLED"), t.Env()...)
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
