package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageOneTarget runs the command as `make package` does, for one target, and checks
// it wrote the binary and a package for every arch string and DSM family of that target.
func TestPackageOneTarget(t *testing.T) {
	dist := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"-version", "v1.2.3", "-dist", dist, "-targets", "arm64", "package"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	want := []string{
		"bin/edgerelay-linux-arm64",
		"bin/TARGETS",
		"synology/edgerelay-armv8-1.2.3-0.spk",
	}
	for _, arch := range []string{"aarch64_cortex-a53", "aarch64_cortex-a72", "aarch64_cortex-a76", "aarch64_generic"} {
		want = append(want, "openwrt/"+arch+"/edgerelay_1.2.3-r1_"+arch+".ipk", "openwrt/"+arch+"/edgerelay-1.2.3-r1.apk")
	}
	for _, p := range want {
		if fi, err := os.Stat(filepath.Join(dist, p)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}

	if m, _ := os.ReadFile(filepath.Join(dist, "bin", "TARGETS")); !strings.Contains(string(m), "GOARCH=arm64\topenwrt: aarch64_cortex-a53") {
		t.Errorf("TARGETS:\n%s", m)
	}
	out.Reset()
	if code := run([]string{"-version", "v1.2.3", "-dist", dist, "-targets", "arm64", "size"}, &out, &errb); code != 0 {
		t.Fatalf("size: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "edgerelay-linux-arm64") || !strings.Contains(out.String(), " ok") {
		t.Errorf("size output:\n%s", out.String())
	}
	t.Log(out.String())

	if code := run([]string{"-version", "not a version", "size"}, &out, &errb); code != 2 {
		t.Errorf("bad version: exit %d", code)
	}
	if code := run([]string{"-version", "v1", "-targets", "sparc", "size"}, &out, &errb); code != 2 {
		t.Errorf("unknown target: exit %d", code)
	}
}
