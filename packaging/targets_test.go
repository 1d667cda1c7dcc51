package packaging

import "testing"

func TestParseVersion(t *testing.T) {
	for in, want := range map[string][3]string{
		"v1.2.3":                  {"1.2.3-r1", "1.2.3-0", "1.2.3"},
		"1.2":                     {"1.2-r1", "1.2-0", "1.2"},
		"v1.2.3-4-gabcdef0":       {"1.2.3_git4~abcdef0-r1", "1.2.3-4", "1.2.3-4-gabcdef0"},
		"v1.2.3-4-gabcdef0-dirty": {"1.2.3_git4~abcdef0-r1", "1.2.3-4", "1.2.3-4-gabcdef0-dirty"},
		"c30838b":                 {"0.0.0~c30838b-r1", "0.0.0-0", "c30838b"},
		"c30838b-dirty":           {"0.0.0~c30838b-r1", "0.0.0-0", "c30838b-dirty"},
		"dev":                     {"0.0.0-r1", "0.0.0-0", "dev"},
	} {
		v, err := ParseVersion(in)
		if err != nil || v.OpenWrt != want[0] || v.DSM != want[1] || v.Image != want[2] || v.Binary != in {
			t.Errorf("%q: %+v %v, want %v", in, v, err, want)
		}
	}
	for _, bad := range []string{"", "latest", "v1.2.3-beta", "1.2.3; rm -rf /", "v99999999999.1"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Every OpenWrt arch string belongs to exactly one target, and the GOARM choice follows
// OpenWrt's rule (no FPU in the arch string: 5).
func TestTargetsCoverArches(t *testing.T) {
	seen := map[string]string{}
	for _, tg := range Targets {
		for _, a := range tg.OpenWrt {
			if prev, dup := seen[a]; dup {
				t.Errorf("%s served by %s and %s", a, prev, tg.Name)
			}
			seen[a] = tg.Name
		}
	}
	for _, a := range []string{"mips_24kc", "mipsel_24kc", "arm_arm926ej-s", "arm_cortex-a7_neon-vfpv4", "arm_cortex-a9",
		"arm_cortex-a15_neon-vfpv4", "aarch64_cortex-a53", "aarch64_generic", "i386_pentium4", "x86_64",
		"riscv64_riscv64", "loongarch64_generic"} {
		if _, ok := TargetFor(a); !ok {
			t.Errorf("%s not served", a)
		}
	}
	if tg, _ := TargetFor("arm_cortex-a9"); tg.GOARM != "5" {
		t.Errorf("arm_cortex-a9 (no FPU in the arch string) built with GOARM=%s", tg.GOARM)
	}
	if tg, _ := TargetFor("mipsel_24kc"); tg.GOMIPS != "softfloat" {
		t.Error("mipsel_24kc must be softfloat")
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"v1.2.3", "v1.2.3-4-gabcdef0-dirty", "c30838b", "dev", "1..2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err == nil && !ValidAPKVersion(v.OpenWrt) {
			t.Fatalf("%q gave invalid apk version %q", s, v.OpenWrt)
		}
	})
}
