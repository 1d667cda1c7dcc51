package packaging

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry is one path of a package payload: a directory, a regular file or a symlink.
type Entry struct {
	Path   string      // absolute and clean, "/" for the root
	Mode   fs.FileMode // fs.ModeDir or fs.ModeSymlink plus permission bits; neither for a file
	Data   []byte      // content of a regular file
	Target string      // symlink target
}

// IsDir reports whether e is a directory.
func (e *Entry) IsDir() bool { return e.Mode.IsDir() }

// IsRegular reports whether e is a regular file.
func (e *Entry) IsRegular() bool { return e.Mode.Type() == 0 }

// Tree is a package payload: every path below the root, owned by root. Parent directories
// that were not added explicitly exist with mode 0755, as `install -d` makes them.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns an empty tree holding only the root directory.
func NewTree() *Tree {
	return &Tree{entries: map[string]*Entry{"/": {Path: "/", Mode: fs.ModeDir | 0o755}}}
}

// AddFile adds a regular file with the given permission bits.
func (t *Tree) AddFile(p string, perm fs.FileMode, data []byte) error {
	return t.add(&Entry{Path: p, Mode: perm.Perm(), Data: data})
}

// AddDir adds a directory with the given permission bits.
func (t *Tree) AddDir(p string, perm fs.FileMode) error {
	return t.add(&Entry{Path: p, Mode: fs.ModeDir | perm.Perm()})
}

// AddSymlink adds a symbolic link pointing at target.
func (t *Tree) AddSymlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("packaging: symlink %s: empty target", p)
	}
	return t.add(&Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target})
}

func (t *Tree) add(e *Entry) error {
	if !strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path || e.Path == "/" {
		return fmt.Errorf("packaging: path %q must be absolute, clean and not the root", e.Path)
	}
	for _, c := range e.Path {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("packaging: path %q holds a control character or backslash", e.Path)
		}
	}
	if old, ok := t.entries[e.Path]; ok && !(old.IsDir() && e.IsDir()) {
		return fmt.Errorf("packaging: %s added twice", e.Path)
	}
	for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
		d, ok := t.entries[dir]
		if !ok {
			t.entries[dir] = &Entry{Path: dir, Mode: fs.ModeDir | 0o755}
			continue
		}
		if !d.IsDir() {
			return fmt.Errorf("packaging: %s: parent %s is not a directory", e.Path, dir)
		}
	}
	t.entries[e.Path] = e
	return nil
}

// Get returns the entry at p, or nil.
func (t *Tree) Get(p string) *Entry { return t.entries[p] }

// Walk returns every entry depth first, children sorted by name, the root first: the order
// `tar --sort=name` writes.
func (t *Tree) Walk() []*Entry {
	children := map[string][]string{}
	for p := range t.entries {
		if p != "/" {
			children[path.Dir(p)] = append(children[path.Dir(p)], p)
		}
	}
	var out []*Entry
	var walk func(string)
	walk = func(p string) {
		out = append(out, t.entries[p])
		kids := children[p]
		sort.Slice(kids, func(i, j int) bool { return path.Base(kids[i]) < path.Base(kids[j]) })
		for _, k := range kids {
			walk(k)
		}
	}
	walk("/")
	return out
}

// Dirs returns the directories sorted by full path (the root first), the order apk mkpkg
// lists them in.
func (t *Tree) Dirs() []*Entry {
	var out []*Entry
	for _, e := range t.entries {
		if e.IsDir() {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Children returns the non-directory entries directly inside dir, sorted by name.
func (t *Tree) Children(dir string) []*Entry {
	var out []*Entry
	for p, e := range t.entries {
		if p != "/" && path.Dir(p) == dir && !e.IsDir() {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Files returns the paths of regular files and symlinks, sorted bytewise: the content of
// OpenWrt's `find . -type f,l | sort` file list.
func (t *Tree) Files() []string {
	var out []string
	for p, e := range t.entries {
		if !e.IsDir() {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func fsMode(perm uint32) fs.FileMode { return fs.FileMode(perm) & fs.ModePerm }
