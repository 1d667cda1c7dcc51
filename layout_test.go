package edgerelay

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The module's shape as tests (like Tailscale's deptest): what the shipped binary links,
// which package may import which, and how long a file may grow.

const module = "github.com/edgerelay/edgerelay"

// notParts are the top-level directories that are not parts: every other one (relay, ddns,
// acme, netfilter, and each part added later) is a part.
var notParts = []string{"agent", "cmd", "openwrt", "packaging"}

// leaves may be imported by every part; they import nothing of this module.
var leaves = []string{"agent/atomicfile", "agent/field", "agent/localapi", ""}

type pkg struct {
	ImportPath string
	Imports    []string
}

func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []pkg
	for dec := json.NewDecoder(bytes.NewReader(out)); dec.More(); {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rel is an import path of this module relative to its root ("" for the root), ok false
// for any other path.
func rel(importPath string) (string, bool) {
	if importPath == module {
		return "", true
	}
	r, ok := strings.CutPrefix(importPath, module+"/")
	return r, ok
}

func top(r string) string { return strings.SplitN(r, "/", 2)[0] }

// TestShippedBinaryLinksNoTailscale: tailscale.com is for tests only.
func TestShippedBinaryLinksNoTailscale(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/edgerelay").Output()
	if err != nil {
		t.Fatal(err)
	}
	for dep := range strings.SplitSeq(string(out), "\n") {
		if dep == "tailscale.com" || strings.HasPrefix(dep, "tailscale.com/") {
			t.Errorf("the shipped binary links %s", dep)
		}
	}
}

// TestPartsImportNoOtherPart: a part's packages (what the shipped binary links of them; test
// helpers such as relay/derptest aside) import only their own part's packages and the
// leaves, never another part or the agent; the leaves import nothing of this module.
func TestPartsImportNoOtherPart(t *testing.T) {
	linked := map[string]bool{}
	for _, p := range goList(t, "-deps", "./cmd/edgerelay") {
		linked[p.ImportPath] = true
	}
	for _, p := range goList(t, "./...") {
		r, _ := rel(p.ImportPath)
		isLeaf := slices.Contains(leaves, r)
		isPart := r != "" && !slices.Contains(notParts, top(r))
		if !isLeaf && !(isPart && linked[p.ImportPath]) {
			continue
		}
		for _, imp := range p.Imports {
			ir, ours := rel(imp)
			switch {
			case !ours:
			case isLeaf:
				t.Errorf("%s is a leaf but imports %s", path.Join(module, r), imp)
			case top(ir) != top(r) && !slices.Contains(leaves, ir):
				t.Errorf("part package %s imports %s: parts meet through the agent", p.ImportPath, imp)
			}
		}
	}
}

// TestNoLongFiles: no non-test Go file over 600 lines.
func TestNoLongFiles(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "dist" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n := bytes.Count(b, []byte("\n")); n > 600 {
			t.Errorf("%s has %d lines (at most 600 outside tests): split it by concern", p, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
