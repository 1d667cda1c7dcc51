package packaging

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// apk-tools v3 packages are one ADB stream: a file header ("ADB." + schema "pckg"), one ADB
// block holding the package tree (info, paths, scripts), then one DATA block per non-empty
// regular file. The writer below mirrors apk-tools' own (src/adb.c, src/app_mkpkg.c) so that
// the same input gives the same bytes as `apk mkpkg`: values are deduplicated, objects are
// 4-byte aligned, trailing null fields are trimmed, and the package id is the first 20 bytes
// of the SHA-256 of the ADB block.

// APKCompression selects the container around the ADB stream.
type APKCompression int

const (
	// APKDeflate is "ADBd" followed by raw deflate: apk mkpkg's default.
	APKDeflate APKCompression = iota
	// APKNone is the bare ADB stream ("ADB.").
	APKNone
)

// APKMeta is the package information apk mkpkg takes as --info fields.
type APKMeta struct {
	Name        string
	Version     string // apk grammar, e.g. 1.2.3-r1
	Arch        string // OpenWrt package arch, or noarch
	Description string
	License     string
	Origin      string
	Maintainer  string
	URL         string
	Depends     []string // names, optionally with a constraint: libc, foo>=1.2
	MTime       time.Time
	// Scripts maps apk script names (post-install, pre-deinstall, …) to their bodies.
	Scripts map[string][]byte
}

const (
	adbMagic        = 0x2e424441 // "ADB."
	adbSchemaPkg    = 0x676b6370 // "pckg"
	adbBlockADB     = 0
	adbBlockData    = 2
	adbTypeSpecial  = 0x0
	adbTypeInt      = 0x1
	adbTypeInt32    = 0x2
	adbTypeInt64    = 0x3
	adbTypeBlob8    = 0x8
	adbTypeBlob16   = 0x9
	adbTypeBlob32   = 0xa
	adbTypeObject   = 0xe
	adbHdrSize      = 8
	adbIntDirectMax = 0x10000000
)

// Field numbers of the package schema (apk-tools src/apk_adb.h).
const (
	pkgInfo    = 1
	pkgPaths   = 2
	pkgScripts = 3

	piName          = 1
	piVersion       = 2
	piHashes        = 3
	piDescription   = 4
	piArch          = 5
	piLicense       = 6
	piOrigin        = 7
	piMaintainer    = 8
	piURL           = 9
	piInstalledSize = 12
	piDepends       = 15
	piMax           = 22

	depName    = 1
	depVersion = 2
	depMatch   = 3

	diName  = 1
	diACL   = 2
	diFiles = 3

	fiName   = 1
	fiACL    = 2
	fiSize   = 3
	fiMTime  = 4
	fiHashes = 5
	fiTarget = 6

	aclMode  = 1
	aclUser  = 2
	aclGroup = 3
)

// apkScriptField maps script names to their field in the scripts object.
var apkScriptField = map[string]int{
	"trigger": 1, "pre-install": 2, "post-install": 3, "pre-deinstall": 4,
	"post-deinstall": 5, "pre-upgrade": 6, "post-upgrade": 7,
}

// adbWriter builds an ADB block the way apk-tools' adb_w_* functions do.
type adbWriter struct {
	buf   []byte
	cache map[string]uint32 // content → offset, apk-tools' write buckets
}

func newADBWriter() *adbWriter {
	return &adbWriter{buf: make([]byte, adbHdrSize), cache: map[string]uint32{}}
}

func adbVal(typ, v uint32) uint32 { return typ<<28 | v }

// raw appends data after zero padding to align and returns its offset.
func (w *adbWriter) raw(data []byte, align int) uint32 {
	for len(w.buf)%align != 0 {
		w.buf = append(w.buf, 0)
	}
	off := uint32(len(w.buf))
	w.buf = append(w.buf, data...)
	return off
}

// data writes data once: identical content already written at a suitably aligned offset is
// shared.
func (w *adbWriter) data(data []byte, align int) uint32 {
	if off, ok := w.cache[string(data)]; ok && off%uint32(align) == 0 {
		return off
	}
	off := w.raw(data, align)
	w.cache[string(data)] = off
	return off
}

func blobBytes(b []byte) (typ uint32, enc []byte, align int) {
	n := len(b)
	switch {
	case n > 0xffff:
		enc = binary.LittleEndian.AppendUint32(nil, uint32(n))
		typ, align = adbTypeBlob32, 4
	case n > 0xff:
		enc = binary.LittleEndian.AppendUint16(nil, uint16(n))
		typ, align = adbTypeBlob16, 2
	default:
		enc = []byte{byte(n)}
		typ, align = adbTypeBlob8, 1
	}
	return typ, append(enc, b...), align
}

func (w *adbWriter) blob(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	typ, enc, align := blobBytes(b)
	return adbVal(typ, w.data(enc, align))
}

// blobRaw writes a blob that is never shared (the package id is patched in place later).
func (w *adbWriter) blobRaw(b []byte) uint32 {
	typ, enc, align := blobBytes(b)
	return adbVal(typ, w.raw(enc, align))
}

func (w *adbWriter) int(v uint64) uint32 {
	switch {
	case v >= 1<<32:
		return adbVal(adbTypeInt64, w.data(binary.LittleEndian.AppendUint64(nil, v), 4))
	case v >= adbIntDirectMax:
		return adbVal(adbTypeInt32, w.data(binary.LittleEndian.AppendUint32(nil, uint32(v)), 4))
	}
	return adbVal(adbTypeInt, uint32(v))
}

// obj writes an object or array from its slots (slot 0 is ignored: it becomes the count).
// Trailing null slots are dropped; an object with no values is null.
func (w *adbWriter) obj(slots []uint32) uint32 {
	n := len(slots)
	for n > 1 && slots[n-1] == 0 {
		n--
	}
	if n <= 1 {
		return 0
	}
	enc := binary.LittleEndian.AppendUint32(nil, uint32(n))
	for _, v := range slots[1:n] {
		enc = binary.LittleEndian.AppendUint32(enc, v)
	}
	return adbVal(adbTypeObject, w.data(enc, 4))
}

func (w *adbWriter) setRoot(v uint32) { binary.LittleEndian.PutUint32(w.buf[4:], v) }

// validAPKName follows apk's name rule: starts alphanumeric, then name characters only.
func validAPKName(s string) bool {
	if s == "" || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune("+-._", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// apkDep is a parsed dependency: name, version and apk's match bits.
type apkDep struct {
	name, version string
	match         uint64
}

// apk version match bits (src/apk_version.h).
const (
	apkVerEqual   = 1
	apkVerLess    = 2
	apkVerGreater = 4
	apkVerFuzzy   = 8
)

func parseAPKDep(s string) (apkDep, error) {
	ops := []struct {
		op    string
		match uint64
	}{
		{">=", apkVerGreater | apkVerEqual}, {"<=", apkVerLess | apkVerEqual},
		{"><", apkVerLess | apkVerGreater}, {"~", apkVerEqual | apkVerFuzzy},
		{"=", apkVerEqual}, {">", apkVerGreater}, {"<", apkVerLess},
	}
	for _, o := range ops {
		if i := strings.Index(s, o.op); i > 0 {
			d := apkDep{name: s[:i], version: s[i+len(o.op):], match: o.match}
			if !validAPKName(d.name) || !ValidAPKVersion(d.version) {
				return apkDep{}, fmt.Errorf("dependency %q: want name[op version]", s)
			}
			return d, nil
		}
	}
	if !validAPKName(s) {
		return apkDep{}, fmt.Errorf("dependency %q: invalid package name", s)
	}
	return apkDep{name: s}, nil
}

// ValidAPKVersion checks apk's version grammar:
// number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}.
func ValidAPKVersion(v string) bool {
	i := 0
	digits := func() bool {
		s := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		return i > s
	}
	if !digits() {
		return false
	}
	for i < len(v) && v[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(v) && v[i] >= 'a' && v[i] <= 'z' {
		i++
	}
	suffixes := []string{"alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"}
	for i < len(v) && v[i] == '_' {
		i++
		ok := false
		for _, s := range suffixes {
			if strings.HasPrefix(v[i:], s) {
				i += len(s)
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
		digits()
	}
	if i < len(v) && v[i] == '~' {
		i++
		s := i
		for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] >= 'a' && v[i] <= 'f') {
			i++
		}
		if i == s {
			return false
		}
	}
	if strings.HasPrefix(v[i:], "-r") {
		i += 2
		if !digits() {
			return false
		}
	}
	return i == len(v)
}

// BuildAPK encodes tree as an apk-tools v3 package. Files are owned by root:root.
func BuildAPK(meta APKMeta, tree *Tree, comp APKCompression) ([]byte, error) {
	if !validAPKName(meta.Name) {
		return nil, fmt.Errorf("apk: invalid package name %q", meta.Name)
	}
	if !ValidAPKVersion(meta.Version) {
		return nil, fmt.Errorf("apk: version %q does not follow apk's grammar (e.g. 1.2.3-r1)", meta.Version)
	}
	if meta.Arch == "" {
		return nil, errors.New("apk: arch is required")
	}
	var deps []apkDep
	for _, s := range meta.Depends {
		d, err := parseAPKDep(s)
		if err != nil {
			return nil, fmt.Errorf("apk: %w", err)
		}
		deps = append(deps, d)
	}
	for name := range meta.Scripts {
		if _, ok := apkScriptField[name]; !ok {
			return nil, fmt.Errorf("apk: unknown script %q", name)
		}
	}
	mtime := meta.MTime.Unix()
	if mtime < 0 {
		return nil, errors.New("apk: mtime before 1970")
	}

	w := newADBWriter()

	// Package info, in field order as mkpkg assigns it.
	info := make([]uint32, piMax)
	info[piName] = w.blob([]byte(meta.Name))
	info[piVersion] = w.blob([]byte(meta.Version))
	info[piDescription] = w.blob([]byte(meta.Description))
	info[piArch] = w.blob([]byte(meta.Arch))
	info[piLicense] = w.blob([]byte(meta.License))
	info[piOrigin] = w.blob([]byte(meta.Origin))
	info[piMaintainer] = w.blob([]byte(meta.Maintainer))
	info[piURL] = w.blob([]byte(meta.URL))
	if len(deps) > 0 {
		type written struct {
			dep apkDep
			val uint32
		}
		var ws []written
		for _, d := range deps {
			dep := make([]uint32, 4)
			dep[depName] = w.blob([]byte(d.name))
			if d.version != "" {
				dep[depVersion] = w.blob([]byte(d.version))
				if d.match != apkVerEqual {
					dep[depMatch] = w.int(d.match)
				}
			}
			ws = append(ws, written{d, w.obj(dep)})
		}
		// The array's pre-commit sorts by name and drops identical entries.
		sort.SliceStable(ws, func(i, j int) bool {
			a, b := ws[i].dep, ws[j].dep
			if a.name != b.name {
				return a.name < b.name
			}
			return a.version < b.version
		})
		vals := []uint32{0}
		for i, x := range ws {
			if i == 0 || x.val != ws[i-1].val {
				vals = append(vals, x.val)
			}
		}
		info[piDepends] = w.obj(vals)
	}

	// Paths: the root, then every directory by path; each directory's files before it.
	var installed uint64
	type dataRef struct {
		pathIdx, fileIdx uint32
		data             []byte
	}
	var datas []dataRef
	var paths []uint32
	mtimeVal := func() uint32 { return w.int(uint64(mtime)) }
	for di, d := range tree.Dirs() {
		var files []uint32
		for fi, e := range tree.Children(d.Path) {
			f := make([]uint32, 7)
			f[fiName] = w.blob([]byte(baseName(e.Path)))
			switch {
			case e.IsRegular():
				sum := sha256.Sum256(e.Data)
				f[fiHashes] = w.blob(sum[:])
				installed += uint64(len(e.Data))
				if len(e.Data) > 0 {
					datas = append(datas, dataRef{uint32(di + 1), uint32(fi + 1), e.Data})
				}
			case e.Mode.Type() == fs.ModeSymlink:
				t := binary.LittleEndian.AppendUint16(nil, 0o120000)
				f[fiTarget] = w.blob(append(t, e.Target...))
			default:
				return nil, fmt.Errorf("apk: %s: unsupported file type %v", e.Path, e.Mode.Type())
			}
			f[fiMTime] = mtimeVal()
			f[fiSize] = w.int(uint64(len(e.Data) + len(e.Target))) // lstat size of a symlink is its target's length
			f[fiACL] = w.acl(e.Mode)
			files = append(files, w.obj(f))
		}
		dir := make([]uint32, 4)
		dir[diName] = w.blob([]byte(strings.TrimPrefix(d.Path, "/")))
		dir[diACL] = w.acl(d.Mode)
		dir[diFiles] = w.obj(append([]uint32{0}, files...))
		paths = append(paths, w.obj(dir))
	}
	if installed == 0 {
		installed = 1
	}
	info[piInstalledSize] = w.int(installed)
	info[piHashes] = w.blobRaw(make([]byte, 20))

	root := make([]uint32, 6)
	root[pkgInfo] = w.obj(info)
	root[pkgPaths] = w.obj(append([]uint32{0}, paths...))
	if len(meta.Scripts) > 0 {
		sc := make([]uint32, 8)
		for i := 1; i < 8; i++ {
			for name, f := range apkScriptField {
				if f == i {
					sc[i] = w.blob(meta.Scripts[name])
				}
			}
		}
		root[pkgScripts] = w.obj(sc)
	}
	w.setRoot(w.obj(root))

	// The package id: SHA-256 of the ADB block (with the id zeroed), first 20 bytes.
	hashOff := info[piHashes] & 0x0fffffff
	sum := sha256.Sum256(w.buf)
	copy(w.buf[hashOff+1:hashOff+21], sum[:20])

	var out bytes.Buffer
	out.Grow(len(w.buf) + int(installed) + 64*len(datas))
	out.Write(binary.LittleEndian.AppendUint32(nil, adbMagic))
	out.Write(binary.LittleEndian.AppendUint32(nil, adbSchemaPkg))
	if err := writeADBBlock(&out, adbBlockADB, w.buf); err != nil {
		return nil, err
	}
	for _, d := range datas {
		hdr := binary.LittleEndian.AppendUint32(nil, d.pathIdx)
		hdr = binary.LittleEndian.AppendUint32(hdr, d.fileIdx)
		if err := writeADBBlock(&out, adbBlockData, append(hdr, d.data...)); err != nil {
			return nil, err
		}
	}
	if comp == APKNone {
		return out.Bytes(), nil
	}
	var z bytes.Buffer
	z.WriteString("ADBd")
	fw, err := flate.NewWriter(&z, 6)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(out.Bytes()); err != nil {
		return nil, err
	}
	if err := fw.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

func (w *adbWriter) acl(mode fs.FileMode) uint32 {
	acl := make([]uint32, 5)
	perm := uint64(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	acl[aclMode] = w.int(perm)
	acl[aclUser] = w.blob([]byte("root"))
	acl[aclGroup] = w.blob([]byte("root"))
	return w.obj(acl)
}

// writeADBBlock writes a block header (type in the top two bits, length including the
// header), the payload and zero padding to 8 bytes.
func writeADBBlock(out *bytes.Buffer, typ uint32, payload []byte) error {
	size := 4 + len(payload)
	if size > 0x3fffffff {
		return fmt.Errorf("apk: block of %d bytes is over the 1 GiB limit", size)
	}
	out.Write(binary.LittleEndian.AppendUint32(nil, typ<<30|uint32(size)))
	out.Write(payload)
	for size%8 != 0 {
		out.WriteByte(0)
		size++
	}
	return nil
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
