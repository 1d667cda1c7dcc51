package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/openwrt"
	"github.com/edgerelay/edgerelay/packaging/synology"
)

var testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openwrtPayload is what both OpenWrt packages must install: path → mode.
var openwrtPayload = map[string]fs.FileMode{
	"/usr/sbin/edgerelay":               0o755,
	"/etc/init.d/edgerelay":             0o755,
	"/etc/config/edgerelay":             0o600,
	"/etc/uci-defaults/90-edgerelay":    0o755,
	"/etc/hotplug.d/iface/95-edgerelay": 0o644,
	"/lib/upgrade/keep.d/edgerelay":     0o644,
	openwrt.LicensePath:                 0o644,
}

// wantMeta is the license, maintainer and project URL every package states.
var wantMeta = map[string]string{"license": edgerelay.LicenseID, "maintainer": edgerelay.Maintainer, "url": edgerelay.URL}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func systemTar(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("tar", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tar %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func parseControl(t *testing.T, s string) (keys []string, m map[string]string) {
	m = map[string]string{}
	var last string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.HasPrefix(l, " ") {
			m[last] += "\n" + l
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("control line %q", l)
		}
		keys, m[k], last = append(keys, k), v, k
	}
	return keys, m
}

// TestOpenWrtIPK unpacks the .ipk of every target with the system's tar/gzip and Go's
// readers and checks the container, headers, control fields, scripts, conffiles and the
// binary's ELF header.
func TestOpenWrtIPK(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	bins := crossBinaries(t)
	v := testVersions(t)
	for _, tg := range Targets {
		bin, err := os.ReadFile(bins[tg.Name])
		if err != nil {
			t.Fatal(err)
		}
		arch := tg.OpenWrt[0]
		pkg, err := BuildOpenWrtIPK(OpenWrtBuild{Version: v.OpenWrt, Arch: arch, Binary: bin, SourceDateEpoch: testEpoch})
		if err != nil {
			t.Fatal(err)
		}
		f := writeTemp(t, IPKFileName("edgerelay", v.OpenWrt, arch), pkg)

		// System tools.
		if got := systemTar(t, "-tzf", f); got != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
			t.Fatalf("%s outer members:\n%s", arch, got)
		}
		listing := systemTar(t, "--numeric-owner", "-xzOf", f, "./data.tar.gz")
		cmd := exec.Command("tar", "--numeric-owner", "-tvzf", "-")
		cmd.Stdin = strings.NewReader(listing)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tvz data: %v\n%s", err, out)
		}
		for p := range openwrtPayload {
			if !strings.Contains(string(out), " ."+p+"\n") {
				t.Errorf("%s: system tar does not list %s:\n%s", arch, p, out)
			}
		}

		// Go readers.
		outer := memberMap(readTar(t, gunzip(t, pkg)))
		if string(outer["./debian-binary"].data) != "2.0\n" {
			t.Errorf("debian-binary %q", outer["./debian-binary"].data)
		}
		for name, m := range outer {
			if !m.hdr.ModTime.Equal(testEpoch) || m.hdr.Mode != 0o644 {
				t.Errorf("outer %s: mtime %v mode %o", name, m.hdr.ModTime, m.hdr.Mode)
			}
		}
		dataTar := gunzip(t, outer["./data.tar.gz"].data)
		data := memberMap(readTar(t, dataTar))
		for p, mode := range openwrtPayload {
			m, ok := data["."+p]
			if !ok {
				t.Errorf("%s: %s missing from data.tar.gz", arch, p)
				continue
			}
			if fs.FileMode(m.hdr.Mode) != mode || m.hdr.Typeflag != tar.TypeReg || !m.hdr.ModTime.Equal(testEpoch) {
				t.Errorf("%s: %s mode %o type %c mtime %v, want %o", arch, p, m.hdr.Mode, m.hdr.Typeflag, m.hdr.ModTime, mode)
			}
		}
		for name, m := range data {
			if m.hdr.Typeflag == tar.TypeDir && (m.hdr.Mode != 0o755 || !strings.HasSuffix(name, "/")) {
				t.Errorf("dir %s mode %o", name, m.hdr.Mode)
			}
			if !strings.HasPrefix(name, "./") {
				t.Errorf("%s: name without ./", name)
			}
		}
		binPath := filepath.Join(t.TempDir(), "edgerelay")
		if err := os.WriteFile(binPath, data["./usr/sbin/edgerelay"].data, 0o755); err != nil {
			t.Fatal(err)
		}
		checkELF(t, tg, binPath)
		if !bytes.Equal(data["./etc/init.d/edgerelay"].data, openwrt.InitScript) {
			t.Error("init script differs from openwrt/files/edgerelay.init")
		}

		ctl := memberMap(readTar(t, gunzip(t, outer["./control.tar.gz"].data)))
		keys, fields := parseControl(t, string(ctl["./control"].data))
		wantOrder := []string{"Package", "Version", "Depends", "Source", "SourceName", "License", "LicenseFiles", "Section",
			"SourceDateEpoch", "URL", "Maintainer", "Architecture", "Installed-Size", "Description"}
		if strings.Join(keys, ",") != strings.Join(wantOrder, ",") {
			t.Errorf("control fields %v, want OpenWrt's order %v", keys, wantOrder)
		}
		if fields["Package"] != "edgerelay" || fields["Version"] != v.OpenWrt || fields["Architecture"] != arch ||
			fields["Depends"] != "libc, ca-bundle" || fields["SourceDateEpoch"] != strconv.FormatInt(testEpoch.Unix(), 10) {
			t.Errorf("control: %v", fields)
		}
		if fields["License"] != wantMeta["license"] || fields["LicenseFiles"] != "LICENSE" ||
			fields["Maintainer"] != wantMeta["maintainer"] || fields["URL"] != wantMeta["url"] {
			t.Errorf("control license/maintainer/URL: %v", fields)
		}
		if !bytes.Equal(data["."+openwrt.LicensePath].data, edgerelay.License) {
			t.Errorf("%s: %s is not the LICENSE file", arch, openwrt.LicensePath)
		}
		if fields["Installed-Size"] != strconv.Itoa(len(dataTar)) {
			t.Errorf("Installed-Size %s, data tar is %d bytes", fields["Installed-Size"], len(dataTar))
		}
		for _, l := range strings.Split(fields["Description"], "\n")[1:] {
			if !strings.HasPrefix(l, " ") {
				t.Errorf("description continuation %q", l)
			}
		}
		if string(ctl["./conffiles"].data) != "/etc/config/edgerelay\n" {
			t.Errorf("conffiles %q", ctl["./conffiles"].data)
		}
		for name, want := range map[string][]byte{
			"./postinst": []byte(openwrtPostinst), "./prerm": []byte(openwrtPrerm),
			"./postinst-pkg": openwrt.PostinstPkg, "./prerm-pkg": openwrt.PrermPkg,
		} {
			m := ctl[name]
			if !bytes.Equal(m.data, want) || m.hdr.Mode != 0o755 {
				t.Errorf("%s: mode %o, content ok %v", name, m.hdr.Mode, bytes.Equal(m.data, want))
			}
		}
	}
}

// TestOpenWrtAPK decodes the .apk of every target with the independent reader: hashes,
// offsets, the file list, OpenWrt's metadata files and scripts, and the binary.
func TestOpenWrtAPK(t *testing.T) {
	bins := crossBinaries(t)
	v := testVersions(t)
	for _, tg := range Targets {
		bin, err := os.ReadFile(bins[tg.Name])
		if err != nil {
			t.Fatal(err)
		}
		arch := tg.OpenWrt[len(tg.OpenWrt)-1]
		raw, err := BuildOpenWrtAPK(OpenWrtBuild{Version: v.OpenWrt, Arch: arch, Binary: bin, SourceDateEpoch: testEpoch})
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodeAPK(raw)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if !p.Compressed {
			t.Error("not deflate-compressed")
		}
		if p.Info["name"] != "edgerelay" || p.Info["version"] != v.OpenWrt || p.Info["arch"] != arch || p.Info["origin"] != "edgerelay" {
			t.Errorf("info %v", p.Info)
		}
		if strings.Join(p.Depends, " ") != "ca-bundle libc" {
			t.Errorf("depends %v", p.Depends)
		}
		for k, want := range wantMeta {
			if p.Info[k] != want {
				t.Errorf("apk %s %q, want %q", k, p.Info[k], want)
			}
		}
		files := map[string]*decodedFile{}
		var paths []string
		for _, f := range p.Files {
			files[f.path()] = f
			paths = append(paths, f.path())
			if f.User != "root" || f.Group != "root" || f.MTime != uint64(testEpoch.Unix()) {
				t.Errorf("%s: %s:%s mtime %d", f.path(), f.User, f.Group, f.MTime)
			}
		}
		for _, d := range p.Dirs {
			if d.Mode != 0o755 || d.User != "root" {
				t.Errorf("dir %q mode %o owner %s", d.Name, d.Mode, d.User)
			}
		}
		for path, mode := range openwrtPayload {
			f := files[path]
			if f == nil || f.Mode != uint32(mode) {
				t.Errorf("%s: %+v, want mode %o", path, f, mode)
			}
		}
		meta := "/lib/apk/packages/edgerelay."
		var listed []string
		if !bytes.Equal(files[openwrt.LicensePath].Data, edgerelay.License) {
			t.Errorf("%s: %s is not the LICENSE file", arch, openwrt.LicensePath)
		}
		for _, p := range paths {
			if !strings.HasPrefix(p, meta) {
				listed = append(listed, p)
			}
		}
		sort.Strings(listed)
		if got := string(files[meta+"list"].Data); got != strings.Join(listed, "\n")+"\n" {
			t.Errorf("edgerelay.list:\n%s\nwant:\n%s", got, strings.Join(listed, "\n"))
		}
		if got := string(files[meta+"conffiles"].Data); got != "/etc/config/edgerelay\n/etc/edgerelay/\n" {
			t.Errorf("conffiles %q", got)
		}
		sum := sha256.Sum256(files["/etc/config/edgerelay"].Data)
		if got := string(files[meta+"conffiles_static"].Data); got != "/etc/config/edgerelay "+hex.EncodeToString(sum[:])+"\n" {
			t.Errorf("conffiles_static %q", got)
		}
		for _, s := range []string{"post-install", "post-upgrade", "pre-deinstall"} {
			if p.Scripts[s] == "" || !strings.HasPrefix(p.Scripts[s], "#!/bin/sh\n") {
				t.Errorf("script %s: %q", s, p.Scripts[s])
			}
		}
		if !strings.Contains(p.Scripts["post-install"], "export pkgname=\"edgerelay\"\nadd_group_and_user\ndefault_postinst\n") ||
			!strings.Contains(p.Scripts["post-install"], "/etc/init.d/firewall reload") ||
			!strings.HasPrefix(p.Scripts["post-upgrade"], "#!/bin/sh\nexport PKG_UPGRADE=1\n") ||
			!strings.Contains(p.Scripts["pre-deinstall"], "default_prerm\n") ||
			!strings.Contains(p.Scripts["pre-deinstall"], "edgerelay subnet remove") {
			t.Errorf("scripts do not follow package-pack.mk:\n%v", p.Scripts)
		}
		binPath := filepath.Join(t.TempDir(), "edgerelay")
		if err := os.WriteFile(binPath, files["/usr/sbin/edgerelay"].Data, 0o755); err != nil {
			t.Fatal(err)
		}
		checkELF(t, tg, binPath)
		t.Logf("%s: apk %d bytes, ADB block %d bytes, %d files", arch, len(raw), p.ADBLen, len(p.Files))
	}
}

// TestSPK unpacks every Synology package and checks the container, INFO, privilege,
// resource, icons, scripts and the binary.
func TestSPK(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	bins := crossBinaries(t)
	v := testVersions(t)
	for _, tg := range Targets {
		if len(tg.Synology) == 0 {
			continue
		}
		bin, err := os.ReadFile(bins[tg.Name])
		if err != nil {
			t.Fatal(err)
		}
		raw, err := BuildSPK(SPKBuild{Version: v.DSM, Arch: tg.Synology, Binary: bin, SourceDateEpoch: testEpoch})
		if err != nil {
			t.Fatal(err)
		}
		if raw[0] == 0x1f && raw[1] == 0x8b {
			t.Fatal("spk is compressed; DSM wants a plain tar")
		}
		f := writeTemp(t, SPKFileName(v.DSM, tg.SynologyName), raw)
		wantMembers := "INFO\nLICENSE\nPACKAGE_ICON.PNG\nPACKAGE_ICON_256.PNG\nedgerelay.sc\nconf/\nconf/privilege\nconf/resource\npackage.tgz\nscripts/\n"
		for _, s := range synology.Scripts {
			wantMembers += "scripts/" + s + "\n"
		}
		if got := systemTar(t, "-tf", f); got != wantMembers {
			t.Errorf("members:\n%s\nwant:\n%s", got, wantMembers)
		}
		m := memberMap(readTar(t, raw))

		info := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(m["INFO"].data))
		for sc.Scan() {
			k, q, ok := strings.Cut(sc.Text(), "=")
			val, err := strconv.Unquote(q)
			if !ok || err != nil {
				t.Fatalf("INFO line %q is not key=\"value\"", sc.Text())
			}
			info[k] = val
		}
		for _, k := range []string{"package", "version", "os_min_ver", "description", "arch", "maintainer", "displayname", "thirdparty", "ctl_stop", "extractsize"} {
			if info[k] == "" {
				t.Errorf("INFO lacks %s", k)
			}
		}
		if info["package"] != "edgerelay" || info["version"] != v.DSM || info["arch"] != strings.Join(tg.Synology, " ") ||
			info["maintainer"] != wantMeta["maintainer"] || info["maintainer_url"] != wantMeta["url"] {
			t.Errorf("INFO %v", info)
		}
		if !bytes.Equal(m["LICENSE"].data, edgerelay.License) {
			t.Error("the spk's LICENSE (shown by Package Center before installing) is not the LICENSE file")
		}
		if maj, build, ok := strings.Cut(info["os_min_ver"], "-"); !ok || !strings.HasPrefix(maj, "7.") {
			t.Errorf("os_min_ver %q", info["os_min_ver"])
		} else if n, _ := strconv.Atoi(build); n < 40000 {
			t.Errorf("os_min_ver build %d < 40000", n)
		}
		for _, n := range strings.FieldsFunc(info["version"], func(r rune) bool { return r == '.' || r == '-' }) {
			if x, err := strconv.ParseInt(n, 10, 64); err != nil || x >= 1<<31 {
				t.Errorf("version part %q", n)
			}
		}

		var priv map[string]any
		if err := json.Unmarshal(m["conf/privilege"].data, &priv); err != nil {
			t.Fatalf("privilege: %v", err)
		}
		if d, _ := priv["defaults"].(map[string]any); d["run-as"] != "package" {
			t.Errorf("privilege defaults %v", priv["defaults"])
		}
		if bytes.Contains(m["conf/privilege"].data, []byte("root")) || priv["tool"] != nil {
			t.Error("privilege asks for root or capabilities: DSM 7 refuses such side-loaded packages")
		}
		var res struct {
			Port struct {
				File string `json:"protocol-file"`
			} `json:"port-config"`
			Linker struct {
				Bin []string `json:"bin"`
			} `json:"usr-local-linker"`
		}
		if err := json.Unmarshal(m["conf/resource"].data, &res); err != nil {
			t.Fatalf("resource: %v", err)
		}
		for name, size := range map[string]int{"PACKAGE_ICON.PNG": 64, "PACKAGE_ICON_256.PNG": 256} {
			img, err := png.Decode(bytes.NewReader(m[name].data))
			if err != nil || img.Bounds().Dx() != size || img.Bounds().Dy() != size {
				t.Errorf("%s: %v %v", name, err, img.Bounds())
			}
		}
		for _, s := range synology.Scripts {
			if m["scripts/"+s].hdr.Mode != 0o755 {
				t.Errorf("scripts/%s mode %o", s, m["scripts/"+s].hdr.Mode)
			}
		}

		inner := memberMap(readTar(t, gunzip(t, m["package.tgz"].data)))
		if !bytes.Equal(inner["share/LICENSE"].data, edgerelay.License) {
			t.Error("package.tgz: share/LICENSE is not the LICENSE file")
		}
		for _, p := range append(res.Linker.Bin, res.Port.File, "share/config.yaml") {
			if _, ok := inner[p]; !ok {
				t.Errorf("package.tgz lacks %s (referenced by resource or scripts)", p)
			}
		}
		checkSPKWebPage(t, info, inner)
		if inner["bin/edgerelay"].hdr.Mode != 0o755 {
			t.Errorf("bin/edgerelay mode %o", inner["bin/edgerelay"].hdr.Mode)
		}
		extract := 0
		for _, x := range inner {
			extract += len(x.data)
		}
		if info["extractsize"] != strconv.Itoa((extract+1023)/1024) {
			t.Errorf("extractsize %s, content %d bytes", info["extractsize"], extract)
		}
		binPath := filepath.Join(t.TempDir(), "edgerelay")
		if err := os.WriteFile(binPath, inner["bin/edgerelay"].data, 0o755); err != nil {
			t.Fatal(err)
		}
		checkELF(t, tg, binPath)
	}
}

// checkSPKWebPage: the DSM desktop entry (INFO's dsmuidir → ui/config, a url app with its
// icons) opens the web page at the port the default config listens on, and the port-config
// service file declares that port.
func checkSPKWebPage(t *testing.T, info map[string]string, inner map[string]tarMember) {
	t.Helper()
	var cfg struct {
		Web struct{ Listen string } `yaml:"web"`
	}
	if err := yaml.Unmarshal(bytes.ReplaceAll(inner["share/config.yaml"].data, []byte("@PKGVAR@"), []byte("/var/packages/edgerelay/var")), &cfg); err != nil {
		t.Fatalf("share/config.yaml: %v", err)
	}
	_, port, err := net.SplitHostPort(cfg.Web.Listen)
	if err != nil {
		t.Fatalf("the spk's default config has no web.listen: %q", cfg.Web.Listen)
	}
	if port != strconv.Itoa(edgerelay.WebPort) {
		t.Errorf("the spk's web.listen %q is not edgerelay.WebPort %d (the image declares that)", cfg.Web.Listen, edgerelay.WebPort)
	}
	if info["dsmuidir"] != "ui" {
		t.Fatalf("INFO dsmuidir %q, want ui", info["dsmuidir"])
	}
	var ui map[string]map[string]struct {
		Type, Title, Icon, Protocol, Port, URL string
		AllUsers                               bool
	}
	if err := json.Unmarshal(inner["ui/config"].data, &ui); err != nil {
		t.Fatalf("ui/config: %v", err)
	}
	app, ok := ui[".url"][info["dsmappname"]]
	if !ok || len(ui[".url"]) != 1 {
		t.Fatalf("ui/config has no .url entry %q (INFO dsmappname): %s", info["dsmappname"], inner["ui/config"].data)
	}
	if app.Type != "url" || app.Protocol != "http" || app.Port != port || app.URL != "/" || app.Title == "" || app.AllUsers {
		t.Errorf("ui/config app %+v, want an admins-only url app at http port %s", app, port)
	}
	for _, n := range synology.UIIconSizes {
		p := "ui/" + strings.Replace(app.Icon, "{0}", strconv.Itoa(n), 1)
		img, err := png.Decode(bytes.NewReader(inner[p].data))
		if err != nil || img.Bounds().Dx() != n {
			t.Errorf("%s: %v", p, err)
		}
	}
	sc := string(inner["conf/edgerelay.sc"].data)
	if !strings.Contains(sc, "[edgerelay_web]") || !strings.Contains(sc, `dst.ports="`+port+`/tcp"`) {
		t.Errorf("port-config (conf/edgerelay.sc) does not declare the web page's port %s/tcp:\n%s", port, sc)
	}
}

// TestSynologyScriptsShellcheck runs shellcheck -s sh on the DSM scripts.
func TestSynologyScriptsShellcheck(t *testing.T) {
	sc := testenv.RequireCommand(t, "shellcheck")
	for _, s := range synology.Scripts {
		out, err := exec.Command(sc, "-s", "sh", filepath.Join("synology", "scripts", s)).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s: %v\n%s", s, err, out)
		}
	}
}

func nativeBinary(t *testing.T) string {
	if runtimeArch() != "amd64" {
		testenv.Skip(t, "the native-binary tests expect an amd64 host")
	}
	return crossBinaries(t)["amd64"]
}

// TestShippedConfigsPassCheck: `edgerelay check` accepts the default OpenWrt UCI file and
// the Synology YAML (as postinst writes it).
func TestShippedConfigsPassCheck(t *testing.T) {
	bin := nativeBinary(t)
	uci := writeTemp(t, "edgerelay", openwrt.DefaultConfig)
	if out, err := exec.Command(bin, "check", "-c", uci).CombinedOutput(); err != nil {
		t.Errorf("edgerelay check (OpenWrt default): %v\n%s", err, out)
	}
	tmpl, err := fs.ReadFile(synology.Files, "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml := writeTemp(t, "config.yaml", bytes.ReplaceAll(tmpl, []byte("@PKGVAR@"), []byte("/var/packages/edgerelay/var")))
	if out, err := exec.Command(bin, "check", "-c", yml).CombinedOutput(); err != nil {
		t.Errorf("edgerelay check (Synology default): %v\n%s", err, out)
	}
}

// TestSynologyLifecycle runs the DSM scripts as DSM would against the real binary:
// postinst writes the config and state directory, start-stop-status starts the daemon
// (status 0, the relay answers on its port), stops it (status 3), and a second postinst
// (an upgrade) keeps the user's config.
// dsmBox is an installed Synology package laid out as DSM lays it out: the target (package.tgz)
// and the var directory, in a temporary root.
type dsmBox struct {
	t                  *testing.T
	root, dest, pkgvar string
}

func newDSMBox(t *testing.T) *dsmBox {
	bin := nativeBinary(t)
	root := t.TempDir()
	b := &dsmBox{t: t, root: root, dest: filepath.Join(root, "target"), pkgvar: filepath.Join(root, "var")}
	for _, d := range []string{b.dest + "/bin", b.dest + "/share", b.pkgvar} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := fs.ReadFile(synology.Files, "config.yaml")
	for p, data := range map[string][]byte{b.dest + "/bin/edgerelay": binData, b.dest + "/share/config.yaml": tmpl} {
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// script runs a DSM package script with DSM's variables; wrap (if any) is the command line the
// shell runs under (ip netns exec …), env more variables, cred the user to run as.
func (b *dsmBox) script(name string, wrap []string, env []string, cred *syscall.Credential, args ...string) (string, int) {
	b.t.Helper()
	p, _ := filepath.Abs(filepath.Join("synology", "scripts", name))
	argv := append(append(append([]string(nil), wrap...), "/bin/sh", p), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYNOPKG_PKGVAR=" + b.pkgvar, "SYNOPKG_PKGDEST=" + b.dest,
		"SYNOPKG_TEMP_LOGFILE=" + b.msgFile()}, env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatal(err)
	}
	return string(out), code
}

func (b *dsmBox) msgFile() string { return filepath.Join(b.root, "msg") }

func TestSynologyLifecycle(t *testing.T) {
	b := newDSMBox(t)
	pkgvar, root := b.pkgvar, b.root
	script := func(name string, args ...string) (string, int) { return b.script(name, nil, nil, nil, args...) }
	if out, code := script("postinst"); code != 0 {
		t.Fatalf("postinst: %d %s", code, out)
	}
	cfg, err := os.ReadFile(filepath.Join(pkgvar, "config.yaml"))
	if err != nil || !bytes.Contains(cfg, []byte("state_dir: "+pkgvar+"/state")) {
		t.Fatalf("postinst config: %v\n%s", err, cfg)
	}
	if fi, err := os.Stat(filepath.Join(pkgvar, "state")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", err, fi)
	}
	msg, _ := os.ReadFile(filepath.Join(root, "msg"))
	if !bytes.Contains(msg, []byte("subnet apply -c "+pkgvar+"/config.yaml")) {
		t.Errorf("postinst does not explain the root step:\n%s", msg)
	}

	// Run on loopback ports picked now, so the test never binds the host's real interfaces.
	derp, stun := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "udp")
	mine := fmt.Sprintf("state_dir: %s/state\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: 127.0.0.1:%d\n  tls: {mode: self-signed}\n", pkgvar, derp, stun)
	if err := os.WriteFile(filepath.Join(pkgvar, "config.yaml"), []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, code := script("start-stop-status", "status"); code != 3 {
		t.Errorf("status before start: %d, want 3", code)
	}
	t.Cleanup(func() { script("start-stop-status", "stop") })
	if out, code := script("start-stop-status", "start"); code != 0 {
		log, _ := os.ReadFile(filepath.Join(pkgvar, "edgerelay.log"))
		t.Fatalf("start: %d %s\nlog:\n%s", code, out, log)
	}
	if _, code := script("start-stop-status", "status"); code != 0 {
		t.Errorf("status while running: %d, want 0", code)
	}
	var conn net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", derp)); err == nil {
			conn.Close()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(pkgvar, "edgerelay.log"))
		t.Errorf("relay port: %v\nlog:\n%s", err, log)
	}
	if out, _ := script("start-stop-status", "log"); strings.TrimSpace(out) != filepath.Join(pkgvar, "edgerelay.log") {
		t.Errorf("log: %q", out)
	}
	if out, code := script("start-stop-status", "stop"); code != 0 {
		t.Errorf("stop: %d %s", code, out)
	}
	if _, code := script("start-stop-status", "status"); code != 3 {
		t.Errorf("status after stop: %d, want 3", code)
	}
	// Upgrade: postinst again leaves the user's config alone.
	if out, code := script("postinst"); code != 0 {
		t.Fatalf("postinst (upgrade): %d %s", code, out)
	}
	if got, _ := os.ReadFile(filepath.Join(pkgvar, "config.yaml")); string(got) != mine {
		t.Error("postinst overwrote the user's config")
	}
	// postuninst leaves config and state alone (preuninst: TestSynologyPreuninst).
	if out, code := script("postuninst"); code != 0 {
		t.Errorf("postuninst: %d %s", code, out)
	}
	for _, p := range []string{"config.yaml", "state"} {
		if _, err := os.Stat(filepath.Join(pkgvar, p)); err != nil {
			t.Errorf("postuninst removed %s: %v", p, err)
		}
	}
}

// TestSynologyPreuninst: with subnet routing set up as root (in a network namespace standing
// for the NAS), preuninst leaves it alone on an upgrade, tells the package user (DSM 7) what
// to run without failing or logging an error, and undoes it when run as root; config and
// state stay.
func TestSynologyPreuninst(t *testing.T) {
	testenv.RequireRoot(t)
	ip := testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "iptables-save")
	b := newDSMBox(t)
	ns := testenv.NewNetNS(t, ip)
	inNS := []string{ip, "netns", "exec", ns}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ip, append(inNS[1:], args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(ip, "link", "add", "tailscale0", "type", "veth", "peer", "name", "lan0")
	// What DSM 7 gives the package: var and state owned by the package user, and the config.
	state, conf := filepath.Join(b.pkgvar, "state"), filepath.Join(b.pkgvar, "config.yaml")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := "state_dir: " + state + "\nsubnet:\n  lan_interfaces: [lan0]\n  routes: [192.168.77.0/24]\n  firewall: iptables\n  advertise: false\n"
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const pkgUser = 65534 // nobody stands for the package user
	for _, p := range []string{b.root, filepath.Dir(b.root), b.pkgvar, state, conf} {
		if err := os.Chown(p, pkgUser, pkgUser); err != nil {
			t.Fatal(err)
		}
	}
	// The Task Scheduler's root task.
	run(filepath.Join(b.dest, "bin", "edgerelay"), "subnet", "apply", "-c", conf)
	applied := func() bool { return strings.Contains(run("iptables-save"), "edgerelay-forward") }
	recorded, err := os.ReadFile(filepath.Join(state, "netfilter.json"))
	if !applied() || err != nil {
		t.Fatalf("subnet apply did not set up rules and state: %v", err)
	}
	msg := func() string { m, _ := os.ReadFile(b.msgFile()); os.Remove(b.msgFile()); return string(m) }

	// Upgrade: nothing touched, nothing said, even as root.
	if out, code := b.script("preuninst", inNS, []string{"SYNOPKG_PKG_STATUS=UPGRADE"}, nil); code != 0 || out != "" || msg() != "" {
		t.Errorf("preuninst on upgrade: exit %d, output %q", code, out)
	}
	if now, _ := os.ReadFile(filepath.Join(state, "netfilter.json")); !applied() || !bytes.Equal(now, recorded) {
		t.Error("preuninst on upgrade changed the subnet setup")
	}

	// Uninstall as the package user: no attempt, no error output, the command to run. (Not in
	// the namespace: entering one needs root, and a package user changes nothing anyway.)
	out, code := b.script("preuninst", nil, []string{"SYNOPKG_PKG_STATUS=UNINSTALL"}, &syscall.Credential{Uid: pkgUser, Gid: pkgUser})
	if m := msg(); code != 0 || out != "" || !strings.Contains(m, "edgerelay subnet remove -c "+conf) {
		t.Errorf("preuninst as the package user: exit %d, output %q, message %q", code, out, m)
	}
	if !applied() {
		t.Error("the package user's preuninst changed the subnet setup")
	}

	// Uninstall as root: undone, quietly.
	if out, code := b.script("preuninst", inNS, []string{"SYNOPKG_PKG_STATUS=UNINSTALL"}, nil); code != 0 || out != "" {
		t.Errorf("preuninst as root: exit %d, output %q", code, out)
	}
	if m := msg(); applied() || m != "" {
		log, _ := os.ReadFile(filepath.Join(b.pkgvar, "edgerelay.log"))
		t.Errorf("preuninst as root left the rules (message %q)\nlog:\n%s", m, log)
	}
	for _, p := range []string{conf, state} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("preuninst removed %s: %v", p, err)
		}
	}
}
