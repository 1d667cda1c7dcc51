package packaging

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestTarMatchesGNUTar: for a tree with directories, files of several sizes and modes, a
// symlink and names past the 100-byte ustar limit, the tar writer produces exactly the bytes
// of `tar --format=gnu --numeric-owner --sort=name --mtime=…` (what ipkg-build runs).
func TestTarMatchesGNUTar(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	mtime := time.Unix(1767225600, 0)
	long := strings.Repeat("d", 60) + "/" + strings.Repeat("f", 70)
	tree := NewTree()
	files := map[string]struct {
		mode fs.FileMode
		data []byte
	}{
		"/usr/sbin/x":         {0o755, []byte("#!/bin/sh\n")},
		"/etc/config/x":       {0o600, bytes.Repeat([]byte("a"), 512)},
		"/etc/b-file":         {0o644, bytes.Repeat([]byte("b"), 513)},
		"/etc/a":              {0o644, nil},
		"/" + long:            {0o644, []byte("long\n")},
		"/etc/init.d/x.extra": {0o755, []byte("x")},
	}
	root := t.TempDir()
	for p, f := range files {
		if err := tree.AddFile(p, f.mode, f.data); err != nil {
			t.Fatal(err)
		}
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := tree.AddSymlink("/usr/bin/x", "../sbin/x"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../sbin/x", filepath.Join(root, "usr/bin/x")); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return err
	})

	got, err := tarTree(tree, mtime)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tar", "--format=gnu", "--numeric-owner", "--owner=0", "--group=0", "--sort=name",
		fmt.Sprintf("--mtime=@%d", mtime.Unix()), "-C", root, "-cf", "-", ".")
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Fatalf("differs from GNU tar at byte %d (block %d, offset %d in it): got %d bytes, want %d",
			n, n/512, n%512, len(got), len(want))
	}
}
