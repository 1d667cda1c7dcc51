package image

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/packaging/synology"
)

// Where things are in the image.
const (
	BinaryPath  = "/usr/bin/edgerelay"
	ConfigPath  = "/etc/edgerelay/config.yaml" // mount your own file here
	VarDir      = "/var/lib/edgerelay"         // the volume: state, and secrets the config names
	StateDir    = VarDir + "/state"            // state_dir of the default config
	CAFile      = "/etc/ssl/certs/ca-certificates.crt"
	LicensePath = "/usr/share/licenses/edgerelay/LICENSE"
	// UID and GID run the daemon: no root in the container by default.
	UID, GID = 65532, 65532
	UserName = "edgerelay"
)

// configHeader replaces the Synology file's own leading comments.
const configHeader = `# edgerelay in a container: mount your own file over ` + ConfigPath + `
# (read-only is fine), then restart the container. ` + "`edgerelay check -c " + ConfigPath + "`" + `
# lists every problem with its line. State and secret files belong in the ` + VarDir + ` volume.
# Below is the Synology package's default with the container's paths: its notes on DSM's
# firewall and root task do not apply here (subnet: see the README's container section).
`

// DefaultConfig is the image's config: the Synology package's default (the same choices for
// a NAS-like box with its own state directory), with the image's paths and header.
func DefaultConfig() ([]byte, error) {
	tmpl, err := fs.ReadFile(synology.Files, "config.yaml")
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(string(tmpl), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:]
	}
	body := strings.ReplaceAll(strings.Join(lines, ""), "@PKGVAR@", VarDir)
	if !strings.Contains(body, "state_dir: "+StateDir+"\n") {
		return nil, fmt.Errorf("image: the Synology default config no longer sets state_dir: @PKGVAR@/state")
	}
	return []byte(configHeader + body), nil
}

// caBundle is the NSS root store as shipped in golang.org/x/crypto/x509roots (pinned by
// go.sum, so every build carries the same roots), PEM-encoded. Roots with a distrust date
// are left out: a PEM file cannot carry the constraint.
func caBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
		}
	}
	return b.Bytes()
}

// file is one entry of a layer.
type file struct {
	path     string // absolute; directories end in /
	mode     fs.FileMode
	uid, gid int
	data     []byte
}

// baseFiles are the same on every platform (one layer, stored once).
func baseFiles(config []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:edgerelay:%s:/sbin/nologin\n", UserName, UID, GID, VarDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, GID)
	return []file{
		{path: "/etc/", mode: 0o755},
		{path: "/etc/edgerelay/", mode: 0o755},
		{path: ConfigPath, mode: 0o644, data: config},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/ssl/", mode: 0o755},
		{path: "/etc/ssl/certs/", mode: 0o755},
		{path: CAFile, mode: 0o644, data: caBundle()},
		{path: "/tmp/", mode: 0o777 | fs.ModeSticky},
		{path: "/usr/", mode: 0o755},
		{path: "/usr/share/", mode: 0o755},
		{path: "/usr/share/licenses/", mode: 0o755},
		{path: "/usr/share/licenses/edgerelay/", mode: 0o755},
		{path: LicensePath, mode: 0o644, data: edgerelay.License},
		{path: "/var/", mode: 0o755},
		{path: "/var/lib/", mode: 0o755},
		{path: VarDir + "/", mode: 0o700, uid: UID, gid: GID},
	}
}

// binaryFiles is the platform's layer.
func binaryFiles(binary []byte) []file {
	return []file{
		{path: "/usr/", mode: 0o755},
		{path: "/usr/bin/", mode: 0o755},
		{path: BinaryPath, mode: 0o755, data: binary},
	}
}

// layerTar writes files as a layer tar: names relative to the root, parents before
// children, numeric owners only, every mtime the same.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{
			Name: strings.TrimPrefix(f.path, "/"), Mode: int64(f.mode.Perm()), Uid: f.uid, Gid: f.gid,
			ModTime: mtime, Typeflag: tar.TypeReg, Size: int64(len(f.data)),
		}
		if f.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if strings.HasSuffix(f.path, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		} else if path.Clean(f.path) != f.path {
			return nil, fmt.Errorf("image: bad path %q", f.path)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
