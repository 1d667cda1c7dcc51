package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/packaging"
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
	if !regexp.MustCompile(`(?m)^edgerelay-linux-arm64 +\d+ +\d+\.\d\d +\d+ +\d+\.\d\d$`).MatchString(out.String()) {
		t.Errorf("size output (bytes, MiB, gzip -9 bytes, MiB):\n%s", out.String())
	}
	t.Log(out.String())

	if code := run([]string{"-version", "not a version", "size"}, &out, &errb); code != 2 {
		t.Errorf("bad version: exit %d", code)
	}
	if code := run([]string{"-version", "v1", "-targets", "sparc", "size"}, &out, &errb); code != 2 {
		t.Errorf("unknown target: exit %d", code)
	}
}

// TestSizeBudget: the size check fails only when the budget target's binary is over 10 MiB,
// whatever the other binaries weigh.
func TestSizeBudget(t *testing.T) {
	dir := t.TempDir()
	var budget, other packaging.Target
	for _, tg := range packaging.Targets {
		switch tg.Name {
		case packaging.SizeBudgetTarget:
			budget = tg
		case "amd64":
			other = tg
		}
	}
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		// Compressible but not trivially: a repeating 251-byte pattern.
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i % 251)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		budgetSize, otherSize int
		exit                  int
	}{
		{packaging.SizeBudget, packaging.SizeBudget + 1, 0},
		{packaging.SizeBudget + 1, 1000, 1},
	} {
		bins := map[string]string{budget.Name: write("budget", c.budgetSize), other.Name: write("other", c.otherSize)}
		var out bytes.Buffer
		if got := size([]packaging.Target{budget, other}, bins, &out); got != c.exit {
			t.Errorf("%d-byte %s, %d-byte %s: exit %d, want %d\n%s", c.budgetSize, budget.Name, c.otherSize, other.Name, got, c.exit, out.String())
		}
		if c.exit == 1 && !strings.Contains(out.String(), "OVER the 10485760-byte budget by 1") {
			t.Errorf("over-budget line:\n%s", out.String())
		}
		t.Log(out.String())
	}
}

// TestImageCommand runs `make image`'s command: every image platform goes into one archive
// named for the version, which skopeo reads as a multi-platform index.
func TestImageCommand(t *testing.T) {
	skopeo := testenv.RequireCommand(t, "skopeo")
	dist := t.TempDir()
	var out, errb bytes.Buffer
	// -targets does not thin the image: it has all its platforms or none.
	if code := run([]string{"-version", "v1.2.3", "-dist", dist, "-targets", "arm64", "image"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	archive := filepath.Join(dist, "image", "edgerelay-1.2.3.tar")
	if !strings.Contains(out.String(), "wrote "+archive+": edgerelay:1.2.3 for") {
		t.Errorf("output:\n%s", out.String())
	}
	raw, err := exec.Command(skopeo, "inspect", "--raw", "oci-archive:"+archive).Output()
	if err != nil {
		t.Fatal(err)
	}
	var idx struct{ Manifests []json.RawMessage }
	if err := json.Unmarshal(raw, &idx); err != nil || len(idx.Manifests) != len(packaging.ImageTargets()) {
		t.Errorf("index (%v): %s", err, raw)
	}
}
