package packaging

// An apk v3 reader written from the format description (apk-tools doc/apk-v3.5.scd and the
// schema in src/apk_adb.h), sharing no code with the encoder, so tests can check what the
// encoder wrote: container, block sequence and padding, every value's offset, the package
// id, the file list and the DATA blocks' contents.

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
)

type decodedFile struct {
	Dir, Name   string
	Mode        uint32
	User, Group string
	Size, MTime uint64
	SHA256      []byte
	Target      []byte
	Data        []byte // from the DATA block
	HaveData    bool
}

type decodedAPK struct {
	Compressed bool
	ADBLen     int
	Info       map[string]string // scalar pkginfo fields by name
	Depends    []string
	ID         []byte
	Dirs       []decodedDir
	Files      []*decodedFile
	Scripts    map[string]string
}

type decodedDir struct {
	Name        string
	Mode        uint32
	User, Group string
}

// adbView reads values out of one ADB block.
type adbView struct{ b []byte }

func (v adbView) at(off, n uint32) ([]byte, error) {
	if uint64(off)+uint64(n) > uint64(len(v.b)) {
		return nil, fmt.Errorf("offset %#x+%d outside the %d-byte ADB block", off, n, len(v.b))
	}
	return v.b[off : off+n], nil
}

func (v adbView) integer(val uint32) (uint64, error) {
	typ, x := val>>28, val&0x0fffffff
	switch typ {
	case 0x1:
		return uint64(x), nil
	case 0x2:
		b, err := v.at(x, 4)
		if err != nil {
			return 0, err
		}
		return uint64(binary.LittleEndian.Uint32(b)), nil
	case 0x3:
		b, err := v.at(x, 8)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b), nil
	case 0x0:
		if x == 0 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("value %#08x is not an integer", val)
}

func (v adbView) blob(val uint32) ([]byte, error) {
	typ, x := val>>28, val&0x0fffffff
	var n, hdr uint32
	switch typ {
	case 0x0:
		if x == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("special value %#x where a blob was expected", val)
	case 0x8:
		b, err := v.at(x, 1)
		if err != nil {
			return nil, err
		}
		n, hdr = uint32(b[0]), 1
	case 0x9:
		b, err := v.at(x, 2)
		if err != nil {
			return nil, err
		}
		n, hdr = uint32(binary.LittleEndian.Uint16(b)), 2
	case 0xa:
		b, err := v.at(x, 4)
		if err != nil {
			return nil, err
		}
		n, hdr = binary.LittleEndian.Uint32(b), 4
	default:
		return nil, fmt.Errorf("value %#08x is not a blob", val)
	}
	return v.at(x+hdr, n)
}

// slots returns an object's or array's slots; slot 0 is the count. Null is an empty object.
func (v adbView) slots(val uint32) ([]uint32, error) {
	typ, x := val>>28, val&0x0fffffff
	if val == 0 {
		return []uint32{1}, nil
	}
	if typ != 0xd && typ != 0xe {
		return nil, fmt.Errorf("value %#08x is not an object or array", val)
	}
	if x%4 != 0 {
		return nil, fmt.Errorf("object at %#x is not 4-byte aligned", x)
	}
	b, err := v.at(x, 4)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(b)
	if n < 1 || n > 1<<16 {
		return nil, fmt.Errorf("object at %#x claims %d slots", x, n)
	}
	b, err = v.at(x, 4*n)
	if err != nil {
		return nil, err
	}
	s := make([]uint32, n)
	for i := range s {
		s[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return s, nil
}

func slot(s []uint32, i int) uint32 {
	if i < len(s) {
		return s[i]
	}
	return 0
}

var pkginfoNames = map[int]string{1: "name", 2: "version", 4: "description", 5: "arch", 6: "license",
	7: "origin", 8: "maintainer", 9: "url"}

var scriptNames = map[int]string{1: "trigger", 2: "pre-install", 3: "post-install",
	4: "pre-deinstall", 5: "post-deinstall", 6: "pre-upgrade", 7: "post-upgrade"}

// decodeAPK reads a whole package and checks its structure.
func decodeAPK(raw []byte) (*decodedAPK, error) {
	out := &decodedAPK{Info: map[string]string{}, Scripts: map[string]string{}}
	if len(raw) < 8 {
		return nil, fmt.Errorf("%d bytes: too short", len(raw))
	}
	switch string(raw[:4]) {
	case "ADB.":
	case "ADBd":
		z, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw[4:])))
		if err != nil {
			return nil, fmt.Errorf("inflate: %w", err)
		}
		raw, out.Compressed = z, true
		if len(raw) < 8 || string(raw[:4]) != "ADB." {
			return nil, fmt.Errorf("inflated stream does not start with ADB.")
		}
	default:
		return nil, fmt.Errorf("magic %q: not an apk v3 package", raw[:4])
	}
	if string(raw[4:8]) != "pckg" {
		return nil, fmt.Errorf("schema %q, want pckg", raw[4:8])
	}
	type block struct {
		typ  uint32
		body []byte
	}
	var blocks []block
	for pos := 8; pos < len(raw); {
		if pos%8 != 0 {
			return nil, fmt.Errorf("block at %d not 8-byte aligned", pos)
		}
		if len(raw)-pos < 4 {
			return nil, fmt.Errorf("truncated block header at %d", pos)
		}
		h := binary.LittleEndian.Uint32(raw[pos:])
		typ, size := h>>30, int(h&0x3fffffff)
		if typ == 3 {
			return nil, fmt.Errorf("extended block at %d not expected", pos)
		}
		if size < 4 || pos+size > len(raw) {
			return nil, fmt.Errorf("block at %d: size %d out of bounds", pos, size)
		}
		blocks = append(blocks, block{typ, raw[pos+4 : pos+size]})
		next := pos + (size+7)/8*8
		if next > len(raw) {
			return nil, fmt.Errorf("block at %d: padding runs past the end", pos)
		}
		for _, c := range raw[pos+size : next] {
			if c != 0 {
				return nil, fmt.Errorf("block at %d: non-zero padding", pos)
			}
		}
		pos = next
	}
	if len(blocks) == 0 || blocks[0].typ != 0 {
		return nil, fmt.Errorf("first block must be the ADB block")
	}
	adb := blocks[0].body
	out.ADBLen = len(adb)
	if len(adb) < 16 {
		return nil, fmt.Errorf("ADB block of %d bytes is too short", len(adb))
	}
	if adb[0] != 0 {
		return nil, fmt.Errorf("adb_compat_ver %d, want 0", adb[0])
	}
	v := adbView{adb}
	root, err := v.slots(binary.LittleEndian.Uint32(adb[4:]))
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	info, err := v.slots(slot(root, 1))
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	for i, name := range pkginfoNames {
		b, err := v.blob(slot(info, i))
		if err != nil {
			return nil, fmt.Errorf("info.%s: %w", name, err)
		}
		if b != nil {
			out.Info[name] = string(b)
		}
	}
	isz, err := v.integer(slot(info, 12))
	if err != nil {
		return nil, fmt.Errorf("info.installed-size: %w", err)
	}
	out.Info["installed-size"] = fmt.Sprint(isz)
	if out.ID, err = v.blob(slot(info, 3)); err != nil {
		return nil, fmt.Errorf("info.hashes: %w", err)
	}
	// The id is SHA-256 of the ADB block with the id bytes zeroed, first 20 bytes.
	if len(out.ID) != 20 {
		return nil, fmt.Errorf("package id is %d bytes, want 20", len(out.ID))
	}
	idOff := int(slot(info, 3)&0x0fffffff) + 1
	zeroed := append([]byte(nil), adb...)
	copy(zeroed[idOff:idOff+20], make([]byte, 20))
	if sum := sha256.Sum256(zeroed); !bytes.Equal(sum[:20], out.ID) {
		return nil, fmt.Errorf("package id %x != sha256(ADB)[:20] %x", out.ID, sum[:20])
	}
	deps, err := v.slots(slot(info, 15))
	if err != nil {
		return nil, fmt.Errorf("info.depends: %w", err)
	}
	for _, dv := range deps[1:] {
		d, err := v.slots(dv)
		if err != nil {
			return nil, fmt.Errorf("depends: %w", err)
		}
		name, err := v.blob(slot(d, 1))
		if err != nil || name == nil {
			return nil, fmt.Errorf("depends: bad name (%v)", err)
		}
		ver, err := v.blob(slot(d, 2))
		if err != nil {
			return nil, fmt.Errorf("depends: %w", err)
		}
		m, err := v.integer(slot(d, 3))
		if err != nil {
			return nil, fmt.Errorf("depends: %w", err)
		}
		s := string(name)
		if ver != nil {
			op := map[uint64]string{0: "=", 1: "=", 2: "<", 3: "<=", 4: ">", 5: ">=", 6: "><", 9: "~"}[m]
			s += op + string(ver)
		}
		out.Depends = append(out.Depends, s)
	}
	acl := func(val uint32) (uint32, string, string, error) {
		a, err := v.slots(val)
		if err != nil {
			return 0, "", "", err
		}
		mode, err := v.integer(slot(a, 1))
		if err != nil {
			return 0, "", "", err
		}
		u, err := v.blob(slot(a, 2))
		if err != nil {
			return 0, "", "", err
		}
		g, err := v.blob(slot(a, 3))
		return uint32(mode), string(u), string(g), err
	}
	paths, err := v.slots(slot(root, 2))
	if err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	index := map[[2]int]*decodedFile{}
	var installed uint64
	for pi, pv := range paths[1:] {
		d, err := v.slots(pv)
		if err != nil {
			return nil, fmt.Errorf("paths[%d]: %w", pi, err)
		}
		name, err := v.blob(slot(d, 1))
		if err != nil {
			return nil, fmt.Errorf("paths[%d].name: %w", pi, err)
		}
		mode, u, g, err := acl(slot(d, 2))
		if err != nil {
			return nil, fmt.Errorf("paths[%d].acl: %w", pi, err)
		}
		if pi > 0 && string(name) <= out.Dirs[pi-1].Name {
			return nil, fmt.Errorf("paths not sorted: %q after %q", name, out.Dirs[pi-1].Name)
		}
		out.Dirs = append(out.Dirs, decodedDir{string(name), mode, u, g})
		files, err := v.slots(slot(d, 3))
		if err != nil {
			return nil, fmt.Errorf("paths[%d].files: %w", pi, err)
		}
		prev := ""
		for fi, fv := range files[1:] {
			f, err := v.slots(fv)
			if err != nil {
				return nil, fmt.Errorf("%s files[%d]: %w", name, fi, err)
			}
			df := &decodedFile{Dir: string(name)}
			fname, err := v.blob(slot(f, 1))
			if err != nil || len(fname) == 0 {
				return nil, fmt.Errorf("%s files[%d]: bad name (%v)", name, fi, err)
			}
			df.Name = string(fname)
			if df.Name <= prev {
				return nil, fmt.Errorf("%s: files not sorted: %q after %q", name, df.Name, prev)
			}
			prev = df.Name
			if df.Mode, df.User, df.Group, err = acl(slot(f, 2)); err != nil {
				return nil, fmt.Errorf("%s/%s acl: %w", name, df.Name, err)
			}
			if df.Size, err = v.integer(slot(f, 3)); err != nil {
				return nil, err
			}
			if df.MTime, err = v.integer(slot(f, 4)); err != nil {
				return nil, err
			}
			if df.SHA256, err = v.blob(slot(f, 5)); err != nil {
				return nil, err
			}
			if df.Target, err = v.blob(slot(f, 6)); err != nil {
				return nil, err
			}
			if df.Target == nil {
				if len(df.SHA256) != 32 {
					return nil, fmt.Errorf("%s/%s: regular file without a SHA-256", name, df.Name)
				}
				installed += df.Size
			}
			out.Files = append(out.Files, df)
			index[[2]int{pi + 1, fi + 1}] = df
		}
	}
	if installed == 0 {
		installed = 1
	}
	if installed != isz {
		return nil, fmt.Errorf("installed-size %d, files sum to %d", isz, installed)
	}
	sc, err := v.slots(slot(root, 3))
	if err != nil {
		return nil, fmt.Errorf("scripts: %w", err)
	}
	for i, n := range scriptNames {
		b, err := v.blob(slot(sc, i))
		if err != nil {
			return nil, fmt.Errorf("scripts.%s: %w", n, err)
		}
		if b != nil {
			out.Scripts[n] = string(b)
		}
	}
	seenData := false
	for bi, b := range blocks[1:] {
		switch b.typ {
		case 1:
			if seenData {
				return nil, fmt.Errorf("signature block after data")
			}
		case 2:
			seenData = true
			if len(b.body) < 8 {
				return nil, fmt.Errorf("data block %d too short", bi)
			}
			key := [2]int{int(binary.LittleEndian.Uint32(b.body)), int(binary.LittleEndian.Uint32(b.body[4:]))}
			f := index[key]
			if f == nil {
				return nil, fmt.Errorf("data block %d points at path %d file %d, which does not exist", bi, key[0], key[1])
			}
			if f.HaveData {
				return nil, fmt.Errorf("two data blocks for %s/%s", f.Dir, f.Name)
			}
			f.Data, f.HaveData = b.body[8:], true
			if uint64(len(f.Data)) != f.Size {
				return nil, fmt.Errorf("%s/%s: %d data bytes, size says %d", f.Dir, f.Name, len(f.Data), f.Size)
			}
			if sum := sha256.Sum256(f.Data); !bytes.Equal(sum[:], f.SHA256) {
				return nil, fmt.Errorf("%s/%s: data hash %s != recorded %s", f.Dir, f.Name,
					hex.EncodeToString(sum[:]), hex.EncodeToString(f.SHA256))
			}
		default:
			return nil, fmt.Errorf("unexpected block type %d", b.typ)
		}
	}
	for _, f := range out.Files {
		if f.Target == nil && f.Size > 0 && !f.HaveData {
			return nil, fmt.Errorf("%s/%s: no data block", f.Dir, f.Name)
		}
	}
	return out, nil
}

// path returns a decoded file's absolute path.
func (f *decodedFile) path() string {
	if f.Dir == "" {
		return "/" + f.Name
	}
	return "/" + f.Dir + "/" + f.Name
}
