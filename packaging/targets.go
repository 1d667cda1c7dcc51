package packaging

import (
	"fmt"
	"regexp"
	"strings"
)

// Target is one Go build and the package architectures it serves: a binary built for the
// lowest CPU of a family runs on every OpenWrt arch string and Synology platform listed.
type Target struct {
	Name   string // file-name label, e.g. mipsle-softfloat
	GOARCH string
	GOARM  string // arm only
	GOMIPS string // mips/mipsle only
	GO386  string // 386 only
	// GORISCV64 is riscv64 only: pinned to the RVA20 baseline (RV64GC), what every OpenWrt
	// riscv64 board has, should Go's default move on.
	GORISCV64 string
	// OpenWrt package arch strings (opkg Architecture / apk arch) this binary is shipped as.
	OpenWrt []string
	// Synology arch names for the INFO file; empty when no DSM 7 model uses this CPU.
	Synology []string
	// SynologyName labels the .spk (the DSM family name).
	SynologyName string
	// Image is the container image platform this binary serves, arch[/variant] (arm/v7);
	// empty when the image leaves the target out.
	Image string
}

// Env returns the go command's environment for this target (static, Linux).
func (t Target) Env() []string {
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + t.GOARCH}
	if t.GOARM != "" {
		env = append(env, "GOARM="+t.GOARM)
	}
	if t.GOMIPS != "" {
		env = append(env, "GOMIPS="+t.GOMIPS)
	}
	if t.GO386 != "" {
		env = append(env, "GO386="+t.GO386)
	}
	if t.GORISCV64 != "" {
		env = append(env, "GORISCV64="+t.GORISCV64)
	}
	return env
}

// Targets is the build matrix. GOARM/GOMIPS/GO386 follow OpenWrt's own Go packaging
// (lang/golang/golang-values.mk): ARM cores without an FPU in their arch string get GOARM=5,
// FPU-less MIPS cores (MT7621, MT76x8, ath79) softfloat. The Synology families follow
// DSM 7's toolkit (pkg_util.sh plat_to_family) and Tailscale's SPK targets.
var Targets = []Target{
	{Name: "mips-softfloat", GOARCH: "mips", GOMIPS: "softfloat",
		OpenWrt: []string{"mips_24kc", "mips_4kec", "mips_mips32"}},
	{Name: "mipsle-softfloat", GOARCH: "mipsle", GOMIPS: "softfloat",
		OpenWrt: []string{"mipsel_24kc", "mipsel_24kc_24kf", "mipsel_74kc", "mipsel_mips32"}},
	{Name: "armv5", GOARCH: "arm", GOARM: "5",
		OpenWrt: []string{"arm_arm926ej-s", "arm_cortex-a7", "arm_cortex-a9", "arm_fa526", "arm_xscale", "arm_arm1176jzf-s_vfp"},
		Image:   "arm/v6"}, // Raspberry Pi Zero and 1
	{Name: "armv7", GOARCH: "arm", GOARM: "7",
		OpenWrt: []string{"arm_cortex-a7_neon-vfpv4", "arm_cortex-a7_vfpv4", "arm_cortex-a9_neon", "arm_cortex-a9_vfpv3-d16",
			"arm_cortex-a15_neon-vfpv4", "arm_cortex-a5_vfpv4", "arm_cortex-a8_vfpv3"},
		Synology:     []string{"armv7", "alpine", "alpine4k", "armada370", "armada375", "armada38x", "armadaxp", "comcerto2k", "monaco"},
		SynologyName: "armv7", Image: "arm/v7"},
	{Name: "arm64", GOARCH: "arm64",
		OpenWrt:      []string{"aarch64_cortex-a53", "aarch64_cortex-a72", "aarch64_cortex-a76", "aarch64_generic"},
		Synology:     []string{"armv8", "rtd1296", "rtd1619b", "armada37xx"},
		SynologyName: "armv8", Image: "arm64"},
	{Name: "386-softfloat", GOARCH: "386", GO386: "softfloat",
		OpenWrt: []string{"i386_pentium-mmx", "i386_pentium4"}},
	{Name: "amd64", GOARCH: "amd64",
		OpenWrt:      []string{"x86_64"},
		Synology:     []string{"x86_64"},
		SynologyName: "x86_64", Image: "amd64"},
	{Name: "riscv64", GOARCH: "riscv64", GORISCV64: "rva20u64",
		OpenWrt: []string{"riscv64_riscv64"}, Image: "riscv64"},
	{Name: "loong64", GOARCH: "loong64",
		OpenWrt: []string{"loongarch64_generic"}},
}

// TargetFor returns the target that serves an OpenWrt arch string.
func TargetFor(openwrtArch string) (Target, bool) {
	for _, t := range Targets {
		for _, a := range t.OpenWrt {
			if a == openwrtArch {
				return t, true
			}
		}
	}
	return Target{}, false
}

// Versions are the one project version in each package format's grammar.
type Versions struct {
	Binary  string // stamped into the binary, as given
	OpenWrt string // apk grammar (opkg takes it too): 1.2.3-r1, 1.2.3_git4~abcdef0-r1
	DSM     string // digits and separators, build number last: 1.2.3-4
	Image   string // container image tag: 1.2.3, 1.2.3-4-gabcdef0
}

var describeRE = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
var hashRE = regexp.MustCompile(`^([0-9a-f]{7,40})(-dirty)?$`)

// ParseVersion maps a `git describe --tags --always --dirty` string (or a plain release
// number) onto the package formats. Untagged builds become 0.0.0 with the hash.
func ParseVersion(v string) (Versions, error) {
	out := Versions{Binary: v, Image: strings.TrimPrefix(v, "v")}
	switch {
	case describeRE.MatchString(v):
		m := describeRE.FindStringSubmatch(v)
		out.OpenWrt, out.DSM = m[1], m[1]+"-0"
		if m[2] != "" {
			out.OpenWrt = fmt.Sprintf("%s_git%s~%s", m[1], m[2], m[3])
			out.DSM = m[1] + "-" + m[2]
		}
	case hashRE.MatchString(v):
		m := hashRE.FindStringSubmatch(v)
		out.OpenWrt, out.DSM = "0.0.0~"+m[1], "0.0.0-0"
	case v == "dev":
		out.OpenWrt, out.DSM = "0.0.0", "0.0.0-0"
	default:
		return out, fmt.Errorf("version %q: want a git describe string (v1.2.3, v1.2.3-4-gabcdef0, abcdef0) or dev", v)
	}
	out.OpenWrt += "-r1"
	if !ValidAPKVersion(out.OpenWrt) {
		return out, fmt.Errorf("version %q maps to %q, which apk rejects", v, out.OpenWrt)
	}
	for _, n := range strings.FieldsFunc(out.DSM, func(r rune) bool { return r == '.' || r == '-' }) {
		if len(n) > 9 {
			return out, fmt.Errorf("version %q: DSM version numbers must stay below 2^31", v)
		}
	}
	return out, nil
}
