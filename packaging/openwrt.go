package packaging

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/openwrt"
)

// Package metadata shared by the OpenWrt formats; the feed Makefile says the same.
const (
	pkgName        = "edgerelay"
	pkgSection     = "net"
	pkgDescription = "One small daemon for home routers: a Tailscale DERP relay and STUN server,\n" +
		"DDNS that follows address changes as they happen, Let's Encrypt certificates\n" +
		"by DNS-01, and subnet-router preparation."
)

// pkgDepends are the runtime dependencies: ca-bundle gives Go's crypto/x509 the roots it
// needs for ACME and DNS APIs; the static binary needs no libc but OpenWrt lists it for every
// package.
var pkgDepends = []string{"libc", "ca-bundle"}

// OpenWrtBuild is one OpenWrt package to make: a binary labelled with one arch string.
type OpenWrtBuild struct {
	Version         string // OpenWrt/apk form, e.g. 1.2.3-r1
	Arch            string // OpenWrt package arch
	Binary          []byte
	SourceDateEpoch time.Time
}

// openwrtTree is the payload both OpenWrt formats install.
func openwrtTree(b OpenWrtBuild) (*Tree, error) {
	t := NewTree()
	if err := t.AddFile(openwrt.BinaryPath, 0o755, b.Binary); err != nil {
		return nil, err
	}
	for _, f := range openwrt.Install() {
		if err := t.AddFile(f.Path, fs.FileMode(f.Mode), f.Data); err != nil {
			return nil, err
		}
	}
	// What package-pack.mk writes for conffile entries that are not regular files in the
	// package: sysupgrade keeps them.
	var keep []string
	for _, c := range openwrt.Conffiles {
		if e := t.Get(strings.TrimSuffix(c, "/")); e == nil || !e.IsRegular() {
			keep = append(keep, c)
		}
	}
	if len(keep) > 0 {
		if err := t.AddFile("/lib/upgrade/keep.d/"+pkgName, 0o644, []byte(strings.Join(keep, "\n")+"\n")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// BuildOpenWrtIPK makes the opkg package (OpenWrt 24.10 and older).
func BuildOpenWrtIPK(b OpenWrtBuild) ([]byte, error) {
	t, err := openwrtTree(b)
	if err != nil {
		return nil, err
	}
	return BuildIPK(IPKMeta{
		Name: pkgName, Version: b.Version, Depends: pkgDepends,
		Source: "feeds/edgerelay/net/edgerelay", SourceName: pkgName,
		License: edgerelay.LicenseID, LicenseFiles: "LICENSE", Section: pkgSection,
		SourceDateEpoch: b.SourceDateEpoch, URL: edgerelay.URL, Maintainer: edgerelay.Maintainer,
		Arch: b.Arch, Description: pkgDescription,
		Conffiles:   openwrt.Conffiles,
		PostinstPkg: openwrt.PostinstPkg, PrermPkg: openwrt.PrermPkg,
	}, t)
}

// OpenWrtAPKScripts are the scripts OpenWrt's package-pack.mk generates for apk: OpenWrt's
// default_postinst/default_prerm followed by the package's own bodies (shebangs removed).
func OpenWrtAPKScripts(name string, postinstPkg, prermPkg []byte) map[string][]byte {
	body := func(b []byte) string {
		var out strings.Builder
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.HasPrefix(strings.TrimLeft(l, " \t"), "#!") {
				continue
			}
			out.WriteString(l)
		}
		return out.String()
	}
	postInstall := "#!/bin/sh\n" +
		"[ \"${IPKG_NO_SCRIPT}\" = \"1\" ] && exit 0\n" +
		"[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n" +
		". ${IPKG_INSTROOT}/lib/functions.sh\n" +
		"export root=\"${IPKG_INSTROOT}\"\n" +
		"export pkgname=\"" + name + "\"\n" +
		"add_group_and_user\n" +
		"default_postinst\n" + body(postinstPkg)
	return map[string][]byte{
		"post-install": []byte(postInstall),
		"post-upgrade": []byte("#!/bin/sh\nexport PKG_UPGRADE=1\n" + body([]byte(postInstall))),
		"pre-deinstall": []byte("#!/bin/sh\n" +
			"[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n" +
			". ${IPKG_INSTROOT}/lib/functions.sh\n" +
			"export root=\"${IPKG_INSTROOT}\"\n" +
			"export pkgname=\"" + name + "\"\n" +
			"default_prerm\n" + body(prermPkg)),
	}
}

// AddOpenWrtAPKMetadata adds what package-pack.mk puts into every apk payload and what
// OpenWrt's default_postinst reads: /lib/apk/packages/NAME.list (every file and symlink,
// sorted, written before the metadata itself), NAME.conffiles and NAME.conffiles_static
// (path and SHA-256 of each conffile present).
func AddOpenWrtAPKMetadata(t *Tree, name string, conffiles []string) error {
	list := t.Files()
	dir := "/lib/apk/packages/" + name
	if err := t.AddFile(dir+".list", 0o644, []byte(strings.Join(list, "\n")+"\n")); err != nil {
		return err
	}
	if len(conffiles) == 0 {
		return nil
	}
	var static bytes.Buffer
	for _, c := range conffiles {
		if e := t.Get(c); e != nil && e.IsRegular() {
			sum := sha256.Sum256(e.Data)
			fmt.Fprintf(&static, "%s %s\n", c, hex.EncodeToString(sum[:]))
		}
	}
	if err := t.AddFile(dir+".conffiles", 0o644, []byte(strings.Join(conffiles, "\n")+"\n")); err != nil {
		return err
	}
	if static.Len() > 0 {
		return t.AddFile(dir+".conffiles_static", 0o644, static.Bytes())
	}
	return nil
}

// BuildOpenWrtAPK makes the apk-tools v3 package (OpenWrt 25.12 and newer).
func BuildOpenWrtAPK(b OpenWrtBuild) ([]byte, error) {
	t, err := openwrtTree(b)
	if err != nil {
		return nil, err
	}
	if err := AddOpenWrtAPKMetadata(t, pkgName, openwrt.Conffiles); err != nil {
		return nil, err
	}
	return BuildAPK(APKMeta{
		Name: pkgName, Version: b.Version, Arch: b.Arch,
		Description: strings.ReplaceAll(pkgDescription, "\n", " "),
		License:     edgerelay.LicenseID, Origin: pkgName, Maintainer: edgerelay.Maintainer, URL: edgerelay.URL,
		Depends: pkgDepends, MTime: b.SourceDateEpoch,
		Scripts: OpenWrtAPKScripts(pkgName, openwrt.PostinstPkg, openwrt.PrermPkg),
	}, t, APKDeflate)
}

// APKFileName is package-pack.mk's naming: NAME-VERSION.apk. Packages for several arches go
// in per-arch directories, as OpenWrt's feeds do.
func APKFileName(name, version string) string { return name + "-" + version + ".apk" }

// The LuCI app's package: arch-independent, what luci.mk makes of openwrt/luci.
const (
	luciSection     = "luci"
	luciDescription = "LuCI support for edgerelay: configuration, status and the DERP map to paste."
)

var luciDepends = []string{pkgName, "luci-base"}

func luciTree() (*Tree, error) {
	t := NewTree()
	for _, f := range openwrt.LuCIInstall() {
		if err := t.AddFile(f.Path, fs.FileMode(f.Mode), f.Data); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// BuildLuCIIPK makes luci-app-edgerelay for opkg (Architecture: all).
func BuildLuCIIPK(version string, sourceDateEpoch time.Time) ([]byte, error) {
	t, err := luciTree()
	if err != nil {
		return nil, err
	}
	return BuildIPK(IPKMeta{
		Name: openwrt.LuCIPackage, Version: version, Depends: luciDepends,
		Source: "feeds/edgerelay/luci/" + openwrt.LuCIPackage, SourceName: openwrt.LuCIPackage,
		License: edgerelay.LicenseID, Section: luciSection,
		SourceDateEpoch: sourceDateEpoch, URL: edgerelay.URL, Maintainer: edgerelay.Maintainer,
		Arch: "all", Description: luciDescription,
		PostinstPkg: openwrt.LuCIPostinst,
	}, t)
}

// BuildLuCIAPK makes luci-app-edgerelay for apk (arch noarch).
func BuildLuCIAPK(version string, sourceDateEpoch time.Time) ([]byte, error) {
	t, err := luciTree()
	if err != nil {
		return nil, err
	}
	if err := AddOpenWrtAPKMetadata(t, openwrt.LuCIPackage, nil); err != nil {
		return nil, err
	}
	return BuildAPK(APKMeta{
		Name: openwrt.LuCIPackage, Version: version, Arch: "noarch", Description: luciDescription,
		License: edgerelay.LicenseID, Origin: openwrt.LuCIPackage, Maintainer: edgerelay.Maintainer, URL: edgerelay.URL,
		Depends: luciDepends, MTime: sourceDateEpoch,
		Scripts: OpenWrtAPKScripts(openwrt.LuCIPackage, openwrt.LuCIPostinst, nil),
	}, t, APKDeflate)
}
