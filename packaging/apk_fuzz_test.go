package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeAPK: the test decoder rejects damaged packages with an error, never a panic or
// an out-of-bounds read.
func FuzzDecodeAPK(f *testing.F) {
	for _, name := range []string{"hello-1.0.0-r1-none.apk", "hello-1.0.0-r1-deflate.apk"} {
		if b, err := os.ReadFile(filepath.Join(fixtures, "apk", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("ADB.pckg"))
	f.Add([]byte("ADBd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeAPK(b)
	})
}

// FuzzAPKRoundTrip: whatever tree goes in, the independent decoder reads back the same
// paths, modes and contents, with valid hashes and offsets.
func FuzzAPKRoundTrip(f *testing.F) {
	f.Add("usr/sbin/x", []byte("#!/bin/sh\n"), "etc/config/x", []byte(strings.Repeat("y", 300)), uint16(0o755))
	f.Add("a", []byte{}, "b/c/d", []byte(strings.Repeat("z", 70000)), uint16(0o600))
	f.Fuzz(func(t *testing.T, p1 string, d1 []byte, p2 string, d2 []byte, mode uint16) {
		tree := NewTree()
		perm := fsMode(uint32(mode) & 0o777)
		in := map[string][]byte{}
		for _, x := range []struct {
			p string
			d []byte
		}{{p1, d1}, {p2, d2}} {
			p := "/" + x.p
			if err := tree.AddFile(p, perm, x.d); err == nil {
				in[p] = x.d
			}
		}
		raw, err := BuildAPK(APKMeta{Name: "x", Version: "1.0-r1", Arch: "noarch", MTime: time.Unix(1767225600, 0)}, tree, APKNone)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := decodeAPK(raw)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		got := map[string]*decodedFile{}
		for _, f := range pkg.Files {
			got[f.path()] = f
		}
		for p, d := range in {
			g := got[p]
			if g == nil || !bytes.Equal(g.Data, d) || g.Mode != uint32(perm) {
				t.Fatalf("%s: got %+v", p, g)
			}
		}
		if len(got) != len(in) {
			t.Fatalf("%d files back, %d in", len(got), len(in))
		}
	})
}
