package packaging

import (
	"bytes"
	"compress/flate"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixtures holds golden packages written by apk-tools' own mkpkg and OpenWrt's ipkg-build
// (see the READMEs there), copied from the project's shared fixtures.
const fixtures = "testdata"

// fixtureDir finds the golden packages.
func fixtureDir(t *testing.T, sub string) string {
	t.Helper()
	for _, base := range []string{os.Getenv("EDGERELAY_FIXTURES"), fixtures} {
		if base == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, sub)); err == nil {
			return filepath.Join(base, sub)
		}
	}
	t.Fatalf("fixtures %s not found (set EDGERELAY_FIXTURES)", sub)
	return ""
}

// treeFromDir loads a payload directory the way mkpkg saw it: directories 0755, files 0755
// when executable else 0644 (git does not keep the exact modes).
func treeFromDir(t *testing.T, dir string) *Tree {
	t.Helper()
	tr := NewTree()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(p, dir+"/"))
		if d.IsDir() {
			return tr.AddDir(rel, 0o755)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		return tr.AddFile(rel, mode, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func fixtureAPKMeta(t *testing.T, dir string) APKMeta {
	script, err := os.ReadFile(filepath.Join(dir, "hello.postinst.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return APKMeta{
		Name: "hello", Version: "1.0.0-r1", Arch: "mipsel_24kc",
		Description: "fixture package made by apk-tools 3.0.6 mkpkg",
		License:     "MIT", Origin: "hello", Depends: []string{"libc"},
		MTime:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Scripts: map[string][]byte{"post-install": script},
	}
}

// TestAPKMatchesMkpkgFixture: given the fixture's payload and metadata, the encoder writes
// the same ADB stream as apk-tools 3.0.6's mkpkg, byte for byte.
func TestAPKMatchesMkpkgFixture(t *testing.T) {
	dir := fixtureDir(t, "apk")
	tree := treeFromDir(t, filepath.Join(dir, "payload"))
	meta := fixtureAPKMeta(t, dir)

	want, err := os.ReadFile(filepath.Join(dir, "hello-1.0.0-r1-none.apk"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := BuildAPK(meta, tree, APKNone)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("uncompressed package differs from mkpkg's at byte %#x (got %d bytes, want %d)", n, len(got), len(want))
	}

	// Deflate: apk's zlib and Go's compress/flate make different (equally valid) streams, so
	// compare the container prefix and the inflated stream with mkpkg's.
	wantZ, err := os.ReadFile(filepath.Join(dir, "hello-1.0.0-r1-deflate.apk"))
	if err != nil {
		t.Fatal(err)
	}
	gotZ, err := BuildAPK(meta, tree, APKDeflate)
	if err != nil {
		t.Fatal(err)
	}
	if string(gotZ[:4]) != "ADBd" || string(wantZ[:4]) != "ADBd" {
		t.Fatalf("deflate prefix: got %q, fixture %q", gotZ[:4], wantZ[:4])
	}
	inflate := func(b []byte) []byte {
		out, err := io.ReadAll(flate.NewReader(bytes.NewReader(b[4:])))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !bytes.Equal(inflate(gotZ), inflate(wantZ)) {
		t.Fatal("inflated package differs from mkpkg's deflate fixture")
	}
	t.Logf("deflate: ours %d bytes, mkpkg (zlib level 6) %d bytes", len(gotZ), len(wantZ))
}

// TestDecodeFixtures: the independent reader understands mkpkg's own output and finds what
// apk adbdump printed for it.
func TestDecodeFixtures(t *testing.T) {
	dir := fixtureDir(t, "apk")
	for _, name := range []string{"hello-1.0.0-r1-none.apk", "hello-1.0.0-r1-deflate.apk"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodeAPK(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.ADBLen != 944 {
			t.Errorf("%s: ADB block %d bytes, adbdump says 944", name, p.ADBLen)
		}
		if got := hexID(p.ID); got != "86af8eb2cc8747cc01bcde7b38f3fad71e0f7d3e" {
			t.Errorf("%s: id %s", name, got)
		}
		if p.Info["installed-size"] != "177" || p.Info["arch"] != "mipsel_24kc" || strings.Join(p.Depends, " ") != "libc" {
			t.Errorf("%s: info %v depends %v", name, p.Info, p.Depends)
		}
		if len(p.Dirs) != 9 || len(p.Files) != 5 {
			t.Errorf("%s: %d dirs %d files, want 9 and 5", name, len(p.Dirs), len(p.Files))
		}
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestOpenWrtAPKMetadataMatchesFixture: the file list OpenWrt's default_postinst reads is
// what the fixture (made the way package-pack.mk makes it) holds, and conffiles_static
// carries each conffile's SHA-256.
func TestOpenWrtAPKMetadataMatchesFixture(t *testing.T) {
	dir := fixtureDir(t, "apk")
	full := treeFromDir(t, filepath.Join(dir, "payload"))
	tree := NewTree()
	for _, e := range full.Walk() {
		if e.IsRegular() && !strings.HasPrefix(e.Path, "/lib/apk/") {
			if err := tree.AddFile(e.Path, e.Mode, e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := AddOpenWrtAPKMetadata(tree, "hello", []string{"/etc/config/hello"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hello.list", "hello.conffiles"} {
		want, err := os.ReadFile(filepath.Join(dir, "payload", "lib", "apk", "packages", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := tree.Get("/lib/apk/packages/" + name); got == nil || string(got.Data) != string(want) {
			t.Errorf("%s: got %q, fixture %q", name, got.Data, want)
		}
	}
	static := tree.Get("/lib/apk/packages/hello.conffiles_static")
	if static == nil || string(static.Data) != "/etc/config/hello 10b5160ff0c8d42bb039ec2d4acb332df0f9a654028f8ac99605274c2847492f\n" {
		t.Errorf("conffiles_static: %+v", static)
	}
}
