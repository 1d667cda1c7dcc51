package packaging

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"strconv"
	"time"
)

// gnuTar writes tar archives byte for byte as GNU tar 1.34 does with
// `--format=gnu --numeric-owner --mtime=T` run as root: GNU magic, numeric ids only, no
// user/group names, GNU long-name records for paths of 100 bytes or more, and the archive
// padded to GNU tar's 10240-byte record. OpenWrt's ipkg-build makes packages that way, and
// opkg's tar reader knows GNU and ustar headers but not PAX ones.
type gnuTar struct {
	buf   bytes.Buffer
	mtime int64
}

const (
	tarBlock  = 512
	tarRecord = 20 * tarBlock
)

func newGNUTar(mtime time.Time) *gnuTar { return &gnuTar{mtime: mtime.Unix()} }

// octal writes v as zero-padded octal filling all but the field's last byte (a NUL).
func octal(field []byte, v int64) error {
	s := strconv.FormatInt(v, 8)
	if len(s) > len(field)-1 {
		return fmt.Errorf("tar: %d does not fit a %d-byte field", v, len(field))
	}
	for i := range field[:len(field)-1] {
		field[i] = '0'
	}
	copy(field[len(field)-1-len(s):], s)
	field[len(field)-1] = 0
	return nil
}

func (w *gnuTar) header(name string, typ byte, mode int64, size int64, mtime int64, link string) error {
	if len(name) >= 100 {
		if err := w.header("././@LongLink", 'L', 0o644, int64(len(name)+1), 0, ""); err != nil {
			return err
		}
		w.pad(append([]byte(name), 0))
		name = name[:100]
	}
	if len(link) >= 100 {
		if err := w.header("././@LongLink", 'K', 0o644, int64(len(link)+1), 0, ""); err != nil {
			return err
		}
		w.pad(append([]byte(link), 0))
		link = link[:100]
	}
	var h [tarBlock]byte
	copy(h[0:100], name)
	if err := octal(h[100:108], mode); err != nil {
		return err
	}
	octal(h[108:116], 0) // uid
	octal(h[116:124], 0) // gid
	if err := octal(h[124:136], size); err != nil {
		return err
	}
	if err := octal(h[136:148], mtime); err != nil {
		return err
	}
	h[156] = typ
	copy(h[157:257], link)
	copy(h[257:265], "ustar  \x00")
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	sum := int64(0)
	for _, c := range h {
		sum += int64(c)
	}
	octal(h[148:155], sum)
	h[155] = ' '
	w.buf.Write(h[:])
	return nil
}

// pad writes data followed by zeros up to the next block.
func (w *gnuTar) pad(data []byte) {
	w.buf.Write(data)
	if r := len(data) % tarBlock; r != 0 {
		w.buf.Write(make([]byte, tarBlock-r))
	}
}

// File adds a regular file.
func (w *gnuTar) File(name string, perm fs.FileMode, data []byte) error {
	if err := w.header(name, '0', int64(tarMode(perm)), int64(len(data)), w.mtime, ""); err != nil {
		return fmt.Errorf("tar: %s: %w", name, err)
	}
	w.pad(data)
	return nil
}

// Dir adds a directory; name ends with a slash.
func (w *gnuTar) Dir(name string, perm fs.FileMode) error {
	return w.header(name, '5', int64(tarMode(perm)), 0, w.mtime, "")
}

// Symlink adds a symbolic link.
func (w *gnuTar) Symlink(name, target string) error {
	return w.header(name, '2', 0o777, 0, w.mtime, target)
}

// Bytes ends the archive (two zero blocks, padded to the record size) and returns it.
func (w *gnuTar) Bytes() []byte {
	w.buf.Write(make([]byte, 2*tarBlock))
	if r := w.buf.Len() % tarRecord; r != 0 {
		w.buf.Write(make([]byte, tarRecord-r))
	}
	return w.buf.Bytes()
}

func tarMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// tarTree writes a whole tree with "./"-relative names, root first, depth first and sorted,
// as `tar --sort=name -C root .` does.
func tarTree(t *Tree, mtime time.Time) ([]byte, error) {
	w := newGNUTar(mtime)
	for _, e := range t.Walk() {
		name := "." + e.Path
		var err error
		switch {
		case e.Path == "/":
			err = w.Dir("./", e.Mode)
		case e.IsDir():
			err = w.Dir(name+"/", e.Mode)
		case e.Mode.Type() == fs.ModeSymlink:
			err = w.Symlink(name, e.Target)
		default:
			err = w.File(name, e.Mode, e.Data)
		}
		if err != nil {
			return nil, err
		}
	}
	return w.Bytes(), nil
}

// gzipN compresses like `gzip -n`: no name, zero mtime, OS byte Unix, default level.
func gzipN(data []byte) ([]byte, error) {
	var b bytes.Buffer
	z, err := gzip.NewWriterLevel(&b, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	z.OS = 3
	if _, err := z.Write(data); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
