// Package atomicfile writes files the way state and secrets must be written: through a
// temporary file, fsync and rename, with the final permissions set before any byte lands,
// so readers and crashes never see a partial or briefly world-readable file.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to path atomically with perm. The directory is created 0700 if missing.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// WriteNew is Write for a file that must not exist yet: if it does (another writer was
// first), it is left alone and the error matches fs.ErrExist.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Link)
}

// write writes data to a temporary file beside path and puts it in place with place.
func write(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return place(f.Name(), path)
}
