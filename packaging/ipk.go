package packaging

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// IPKMeta is the control information of an opkg package, as OpenWrt's package-pack.mk
// writes it.
type IPKMeta struct {
	Name            string
	Version         string
	Depends         []string // opkg syntax, e.g. libc, foo (>= 1.2)
	Source          string
	SourceName      string
	License         string // SPDX identifier
	LicenseFiles    string // the license file's name in the source tree
	Section         string
	SourceDateEpoch time.Time // every mtime in the package, and the SourceDateEpoch field
	URL             string
	Maintainer      string
	Arch            string
	Description     string
	// Conffiles are kept across upgrades (a modified one is left alone, the new one lands
	// next to it as FILE-opkg).
	Conffiles []string
	// PostinstPkg and PrermPkg are the package's own install/removal logic; OpenWrt's
	// generated postinst/prerm run them from default_postinst/default_prerm.
	PostinstPkg []byte
	PrermPkg    []byte
}

// OpenWrt's generated maintainer scripts (include/package-pack.mk, opkg branch).
const (
	openwrtPostinst = `#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
`
	openwrtPrerm = `#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
`
)

var ipkNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.+-]+$`)

// IPKControl renders the control file with OpenWrt's field order; installedSize is the byte
// length of the uncompressed data tar, as ipkg-build records it.
func IPKControl(m IPKMeta, installedSize int) string {
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	field("Package", m.Name)
	field("Version", m.Version)
	field("Depends", strings.Join(m.Depends, ", "))
	field("Source", m.Source)
	field("SourceName", m.SourceName)
	field("License", m.License)
	field("LicenseFiles", m.LicenseFiles)
	field("Section", m.Section)
	if !m.SourceDateEpoch.IsZero() {
		field("SourceDateEpoch", strconv.FormatInt(m.SourceDateEpoch.Unix(), 10))
	}
	field("URL", m.URL)
	field("Maintainer", m.Maintainer)
	field("Architecture", m.Arch)
	field("Installed-Size", strconv.Itoa(installedSize))
	// printf "Description: "; echo "$desc" | sed -e 's,^[[:space:]]*, ,g'
	b.WriteString("Description: ")
	for _, line := range strings.Split(strings.TrimRight(m.Description, "\n"), "\n") {
		b.WriteString(" " + strings.TrimLeft(line, " \t") + "\n")
	}
	return b.String()
}

// BuildIPK makes an .ipk exactly as OpenWrt's scripts/ipkg-build does: a gzip'd GNU tar of
// ./debian-binary, ./data.tar.gz and ./control.tar.gz, everything root-owned with one mtime.
func BuildIPK(m IPKMeta, tree *Tree) ([]byte, error) {
	if !ipkNameRE.MatchString(m.Name) {
		return nil, fmt.Errorf("ipk: package name %q: only [a-zA-Z0-9_.+-] allowed", m.Name)
	}
	if m.Version == "" || m.Arch == "" {
		return nil, errors.New("ipk: version and arch are required")
	}
	if m.SourceDateEpoch.IsZero() {
		return nil, errors.New("ipk: SourceDateEpoch is required (it is every file's mtime)")
	}
	mtime := m.SourceDateEpoch

	data, err := tarTree(tree, mtime)
	if err != nil {
		return nil, fmt.Errorf("ipk: data: %w", err)
	}

	// ipkg-build resolves conffiles with `find ENTRY -type f`: directories become the files
	// under them, entries not in the package drop out; then it sorts the list.
	var conf []string
	for _, c := range m.Conffiles {
		c = strings.TrimSuffix(c, "/")
		e := tree.Get(c)
		switch {
		case e == nil:
		case e.IsDir():
			for _, f := range tree.Files() {
				if strings.HasPrefix(f, c+"/") {
					conf = append(conf, f)
				}
			}
		case e.IsRegular():
			conf = append(conf, c)
		}
	}
	sort.Strings(conf)

	ctl := NewTree()
	add := func(name string, mode uint32, body []byte) error {
		return ctl.AddFile("/"+name, fsMode(mode), body)
	}
	steps := []error{
		add("control", 0o644, []byte(IPKControl(m, len(data)))),
		add("postinst", 0o755, []byte(openwrtPostinst)),
		add("prerm", 0o755, []byte(openwrtPrerm)),
	}
	if len(conf) > 0 {
		steps = append(steps, add("conffiles", 0o644, []byte(strings.Join(conf, "\n")+"\n")))
	}
	if m.PostinstPkg != nil {
		steps = append(steps, add("postinst-pkg", 0o755, m.PostinstPkg))
	}
	if m.PrermPkg != nil {
		steps = append(steps, add("prerm-pkg", 0o755, m.PrermPkg))
	}
	if err := errors.Join(steps...); err != nil {
		return nil, fmt.Errorf("ipk: control: %w", err)
	}
	control, err := tarTree(ctl, mtime)
	if err != nil {
		return nil, fmt.Errorf("ipk: control: %w", err)
	}

	dataGz, err := gzipN(data)
	if err != nil {
		return nil, err
	}
	controlGz, err := gzipN(control)
	if err != nil {
		return nil, err
	}
	outer := newGNUTar(mtime)
	if err := errors.Join(
		outer.File("./debian-binary", 0o644, []byte("2.0\n")),
		outer.File("./data.tar.gz", 0o644, dataGz),
		outer.File("./control.tar.gz", 0o644, controlGz),
	); err != nil {
		return nil, fmt.Errorf("ipk: %w", err)
	}
	return gzipN(outer.Bytes())
}

// IPKFileName is ipkg-build's naming: NAME_VERSION_ARCH.ipk.
func IPKFileName(name, version, arch string) string {
	return name + "_" + version + "_" + arch + ".ipk"
}
