package packaging

import (
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// testVersion is stamped into the test builds and must come back from `edgerelay version`.
const testVersion = "v0.0.0-1-gfeedbee"

// testVersions is testVersion in each package format's form.
func testVersions(t testing.TB) Versions {
	t.Helper()
	v, err := ParseVersion(testVersion)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// buildCache builds every target once per test run into one temporary directory shared by
// all tests (cross-compiling seven targets is the slow part on two cores).
var buildCache struct {
	once sync.Once
	dir  string
	bins map[string]string
	took map[string]time.Duration
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildCache.dir != "" {
		os.RemoveAll(buildCache.dir)
	}
	os.Exit(code)
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "cmd", "edgerelay")); err != nil {
		testenv.Skip(t, "cmd/edgerelay is missing: nothing to cross-compile")
	}
	return d
}

// crossBinaries returns the path of every target's binary, building them on first use.
func crossBinaries(t testing.TB) map[string]string {
	t.Helper()
	root := moduleRoot(t)
	buildCache.once.Do(func() {
		buildCache.dir, buildCache.err = os.MkdirTemp("", "edgerelay-cross-")
		if buildCache.err != nil {
			return
		}
		buildCache.bins, buildCache.took = map[string]string{}, map[string]time.Duration{}
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildCache.err = err
			return
		}
		for _, tg := range Targets {
			out := filepath.Join(buildCache.dir, BinaryName(tg))
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			err := CrossBuild(ctx, goBin, root, MainPackage, tg, testVersion, out)
			cancel()
			if err != nil {
				buildCache.err = err
				return
			}
			buildCache.bins[tg.Name], buildCache.took[tg.Name] = out, time.Since(start)
		}
	})
	if buildCache.err != nil {
		t.Fatal(buildCache.err)
	}
	return buildCache.bins
}

// MipsleSoftfloatBinary builds (once per test run) and returns the linux/mipsle softfloat
// edgerelay binary, the one that runs on MT7621/MT76x8 routers. It is the entry point for
// running the relay under qemu-mipsel-static in an end-to-end test.
func MipsleSoftfloatBinary(t testing.TB) string {
	t.Helper()
	return crossBinaries(t)["mipsle-softfloat"]
}

// elfWant is what the ELF header of each target's binary must say; e_flags&flagsMask must
// equal flags (the ABI the distribution's userland uses).
var elfWant = map[string]struct {
	machine          elf.Machine
	class            elf.Class
	order            string
	qemu             string
	flagsMask, flags uint32
}{
	"mips-softfloat":   {elf.EM_MIPS, elf.ELFCLASS32, "BigEndian", "qemu-mips-static", 0, 0},
	"mipsle-softfloat": {elf.EM_MIPS, elf.ELFCLASS32, "LittleEndian", "qemu-mipsel-static", 0, 0},
	// The top byte of ARM's e_flags is the EABI version: 5.
	"armv5":         {elf.EM_ARM, elf.ELFCLASS32, "LittleEndian", "qemu-arm-static", 0xff000000, 0x05000000},
	"armv7":         {elf.EM_ARM, elf.ELFCLASS32, "LittleEndian", "qemu-arm-static", 0xff000000, 0x05000000},
	"arm64":         {elf.EM_AARCH64, elf.ELFCLASS64, "LittleEndian", "qemu-aarch64-static", 0, 0},
	"386-softfloat": {elf.EM_386, elf.ELFCLASS32, "LittleEndian", "qemu-i386-static", 0, 0},
	"amd64":         {elf.EM_X86_64, elf.ELFCLASS64, "LittleEndian", "qemu-x86_64-static", 0, 0},
	// OpenWrt's riscv64 and loongarch64 userlands use the double-float ABIs (lp64d).
	"riscv64": {elf.EM_RISCV, elf.ELFCLASS64, "LittleEndian", "qemu-riscv64-static", 0x6, 0x4},
	"loong64": {elf.EM_LOONGARCH, elf.ELFCLASS64, "LittleEndian", "qemu-loongarch64-static", 0x7, 0x3},
}

// checkELF verifies a binary is a static, stripped Linux executable for target tg.
func checkELF(t *testing.T, tg Target, path string) {
	t.Helper()
	want, ok := elfWant[tg.Name]
	if !ok {
		t.Fatalf("no ELF expectation for %s", tg.Name)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != want.machine || f.Class != want.class || f.ByteOrder.String() != want.order || f.Type != elf.ET_EXEC {
		t.Errorf("%s: %v %v %v %v, want %v %v %s ET_EXEC", tg.Name, f.Machine, f.Class, f.ByteOrder, f.Type, want.machine, want.class, want.order)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%v)", tg.Name, p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s: not stripped (.symtab present)", tg.Name)
	}
	if want.flagsMask != 0 {
		// e_flags sits at offset 36 of a 32-bit ELF header, 48 of a 64-bit one.
		off := 36
		if f.Class == elf.ELFCLASS64 {
			off = 48
		}
		hdr := make([]byte, off+4)
		r, err := os.Open(path)
		if err == nil {
			_, err = io.ReadFull(r, hdr)
			r.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		if flags := f.ByteOrder.Uint32(hdr[off:]); flags&want.flagsMask != want.flags {
			t.Errorf("%s: e_flags %#x, want %#x under mask %#x", tg.Name, flags, want.flags, want.flagsMask)
		}
	}
	// Build settings recorded by the go command: the float ABI cannot be seen by running the
	// binary under qemu (which emulates an FPU), so check it here.
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: build info: %v", tg.Name, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	wantSet := map[string]string{"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": tg.GOARCH, "-trimpath": "true"}
	if tg.GOARM != "" {
		wantSet["GOARM"] = tg.GOARM
	}
	if tg.GOMIPS != "" {
		wantSet["GOMIPS"] = tg.GOMIPS
	}
	if tg.GO386 != "" {
		wantSet["GO386"] = tg.GO386
	}
	if tg.GORISCV64 != "" {
		wantSet["GORISCV64"] = tg.GORISCV64
	}
	for k, v := range wantSet {
		if settings[k] != v {
			t.Errorf("%s: build setting %s=%q, want %q", tg.Name, k, settings[k], v)
		}
	}
	// With -trimpath the go command leaves -ldflags out of the build info; -s shows as the
	// missing .symtab above, -w as no DWARF sections, the version stamp under qemu.
	for _, sec := range f.Sections {
		if strings.HasPrefix(sec.Name, ".debug_") || strings.HasPrefix(sec.Name, ".zdebug_") {
			t.Errorf("%s: DWARF section %s present (built without -w)", tg.Name, sec.Name)
		}
	}
}

// TestCrossBinaries: every target's binary is a static, stripped executable for its CPU,
// built with the float ABI OpenWrt's devices need.
func TestCrossBinaries(t *testing.T) {
	bins := crossBinaries(t)
	for _, tg := range Targets {
		checkELF(t, tg, bins[tg.Name])
		fi, err := os.Stat(bins[tg.Name])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-18s %9d bytes (%.2f MiB), built in %s", tg.Name, fi.Size(), float64(fi.Size())/(1<<20), buildCache.took[tg.Name].Round(time.Millisecond))
		// Budgets are measured and reported by `make size` and `make bench` (which exit
		// non-zero when over); tests report, they do not gate.
		if tg.Name == SizeBudgetTarget && fi.Size() > SizeBudget {
			t.Logf("%s: %d bytes, OVER the %d-byte budget of design.md by %d", tg.Name, fi.Size(), SizeBudget, fi.Size()-SizeBudget)
		}
	}
}

// TestCrossBinariesRunUnderQEMU: each binary runs `edgerelay version` on its emulated CPU
// (Debian's qemu-user-static) and reports the stamped version and its GOARCH.
func TestCrossBinariesRunUnderQEMU(t *testing.T) {
	bins := crossBinaries(t)
	for _, tg := range Targets {
		qemu := testenv.RequireCommand(t, elfWant[tg.Name].qemu)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, qemu, bins[tg.Name], "version")
		if tg.GOARCH == "386" {
			// qemu-i386 7.2 user mode mishandles the signal Go uses for asynchronous
			// preemption (even a hello-world crashes with "bad g in signal handler");
			// real x86 CPUs do not need this.
			cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1")
		}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s under %s: %v\n%s", tg.Name, filepath.Base(qemu), err, out)
			continue
		}
		want := fmt.Sprintf("edgerelay %s (", testVersion)
		if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), "linux/"+tg.GOARCH) {
			t.Errorf("%s: version output %q, want %q… linux/%s", tg.Name, out, want, tg.GOARCH)
		}
	}
}

func runtimeArch() string { return runtime.GOARCH }
