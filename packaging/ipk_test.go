package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("not gzip data (starts % x)", b[:min(len(b), 4)])
	}
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if z.Name != "" || !z.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q / mtime %v (gzip -n leaves both out)", z.Name, z.ModTime)
	}
	out, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type tarMember struct {
	hdr  *tar.Header
	data []byte
}

// readTar reads every member with Go's reader and checks what opkg's reader needs: ustar/GNU
// magic, no PAX headers, root-owned, known types.
func readTar(t *testing.T, b []byte) []tarMember {
	t.Helper()
	var out []tarMember
	r := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format&(tar.FormatPAX) != 0 || len(h.PAXRecords) > 0 {
			t.Errorf("%s: PAX header (opkg cannot read it)", h.Name)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q, want numeric root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		default:
			t.Errorf("%s: tar type %q", h.Name, h.Typeflag)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarMember{h, data})
	}
	// Magic of every header block, read raw: GNU "ustar  \0".
	for off := 0; off+512 <= len(b); {
		blk := b[off : off+512]
		if bytes.Equal(blk, make([]byte, 512)) {
			break
		}
		if string(blk[257:263]) != "ustar " && string(blk[257:263]) != "ustar\x00" {
			t.Errorf("header at %d: magic %q", off, blk[257:265])
		}
		size := parseOctal(blk[124:136])
		off += 512 + int((size+511)/512*512)
	}
	return out
}

func parseOctal(b []byte) int64 {
	var v int64
	for _, c := range b {
		if c >= '0' && c <= '7' {
			v = v*8 + int64(c-'0')
		}
	}
	return v
}

func memberMap(ms []tarMember) map[string]tarMember {
	m := map[string]tarMember{}
	for _, x := range ms {
		m[x.hdr.Name] = x
	}
	return m
}

// TestIPKMatchesIpkgBuildFixture: from the fixture's payload and CONTROL, BuildIPK writes the
// same inner tars as OpenWrt's ipkg-build (GNU tar), byte for byte, and the same outer layout.
func TestIPKMatchesIpkgBuildFixture(t *testing.T) {
	dir := fixtureDir(t, "ipk")
	tree := treeFromDir(t, filepath.Join(fixtureDir(t, "apk"), "payload"))
	// The ipk fixture has the apk payload minus OpenWrt's apk metadata.
	pruned := NewTree()
	for _, e := range tree.Walk() {
		if e.Path == "/" || strings.HasPrefix(e.Path, "/lib") {
			continue
		}
		var err error
		if e.IsDir() {
			err = pruned.AddDir(e.Path, e.Mode)
		} else {
			err = pruned.AddFile(e.Path, e.Mode, e.Data)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	postinstPkg, err := os.ReadFile(filepath.Join(dir, "CONTROL", "postinst-pkg"))
	if err != nil {
		t.Fatal(err)
	}
	meta := IPKMeta{
		Name: "hello", Version: "1.0.0-r1", Depends: []string{"libc"},
		Source: "package/hello", SourceName: "hello", License: "MIT", Section: "net",
		SourceDateEpoch: time.Unix(1767225600, 0), Arch: "mipsel_24kc",
		Description: "fixture package made by OpenWrt's scripts/ipkg-build",
		Conffiles:   []string{"/etc/config/hello"}, PostinstPkg: postinstPkg,
	}
	got, err := BuildIPK(meta, pruned)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "hello_1.0.0-r1_mipsel_24kc.ipk"))
	if err != nil {
		t.Fatal(err)
	}
	gotOuter, wantOuter := readTar(t, gunzip(t, got)), readTar(t, gunzip(t, want))
	if len(gotOuter) != len(wantOuter) {
		t.Fatalf("outer members: %d, fixture %d", len(gotOuter), len(wantOuter))
	}
	for i := range gotOuter {
		g, w := gotOuter[i].hdr, wantOuter[i].hdr
		if g.Name != w.Name || g.Mode != w.Mode || !g.ModTime.Equal(w.ModTime) || g.Typeflag != w.Typeflag || g.Format != w.Format {
			t.Errorf("outer member %d: got %s %o %v %c %v, fixture %s %o %v %c %v", i,
				g.Name, g.Mode, g.ModTime, g.Typeflag, g.Format, w.Name, w.Mode, w.ModTime, w.Typeflag, w.Format)
		}
		gd, wd := gotOuter[i].data, wantOuter[i].data
		if strings.HasSuffix(g.Name, ".gz") {
			gd, wd = gunzip(t, gd), gunzip(t, wd)
		}
		if !bytes.Equal(gd, wd) {
			t.Errorf("%s: content differs from ipkg-build's (%d vs %d bytes)", g.Name, len(gd), len(wd))
		}
	}
	// Control scripts are OpenWrt's generated ones, byte for byte.
	ctl := memberMap(readTar(t, gunzip(t, memberMap(gotOuter)["./control.tar.gz"].data)))
	for _, name := range []string{"postinst", "prerm", "control", "conffiles"} {
		fix, err := os.ReadFile(filepath.Join(dir, "CONTROL", name))
		if err != nil {
			t.Fatal(err)
		}
		if string(ctl["./"+name].data) != string(fix) {
			t.Errorf("%s:\n%s\nfixture:\n%s", name, ctl["./"+name].data, fix)
		}
	}
}

// TestIPKSystemTar: the system's gzip and GNU tar list what Go's reader sees.
func TestIPKSystemTar(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	testenv.RequireCommand(t, "gzip")
	tree := NewTree()
	if err := tree.AddFile("/usr/sbin/x", 0o755, []byte("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	if err := tree.AddFile("/etc/config/x", 0o644, []byte("config x 'main'\n")); err != nil {
		t.Fatal(err)
	}
	pkg, err := BuildIPK(IPKMeta{Name: "x", Version: "1-r1", Arch: "x86_64", Description: "x\n  second line",
		SourceDateEpoch: time.Unix(1767225600, 0), Conffiles: []string{"/etc/config"}}, tree)
	if err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	f := filepath.Join(d, "x.ipk")
	if err := os.WriteFile(f, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gzip", "-t", f).CombinedOutput()
	if err != nil {
		t.Fatalf("gzip -t: %v\n%s", err, out)
	}
	out, err = exec.Command("tar", "-tzf", f).CombinedOutput()
	if err != nil || string(out) != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
		t.Fatalf("tar -tzf: %v\n%s", err, out)
	}
	out, err = exec.Command("sh", "-c", "tar -xzOf "+f+" ./control.tar.gz | tar -xzOf - ./control ./conffiles").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Archive order: conffiles sorts before control.
	want := "/etc/config/x\nPackage: x\nVersion: 1-r1\nSourceDateEpoch: 1767225600\nArchitecture: x86_64\nInstalled-Size: 10240\n" +
		"Description:  x\n second line\n"
	if string(out) != want {
		t.Fatalf("control+conffiles:\n%s\nwant:\n%s", out, want)
	}
}
