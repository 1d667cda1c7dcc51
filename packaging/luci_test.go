package packaging

import (
	"bytes"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/openwrt"
)

// TestLuCIPackages unpacks luci-app-edgerelay (.ipk with the system's tar and Go's readers,
// .apk with the independent decoder): arch-independent, depends on the daemon and LuCI,
// installs the view, menu and ACL world-readable, and clears LuCI's caches after install.
func TestLuCIPackages(t *testing.T) {
	testenv.RequireCommand(t, "tar")
	v := testVersions(t)
	want := map[string][]byte{}
	for _, f := range openwrt.LuCIInstall() {
		want[f.Path] = f.Data
		if f.Mode != 0o644 {
			t.Errorf("%s mode %o: LuCI files are data (0644)", f.Path, f.Mode)
		}
	}

	ipk, err := BuildLuCIIPK(v.OpenWrt, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	f := writeTemp(t, IPKFileName(openwrt.LuCIPackage, v.OpenWrt, "all"), ipk)
	if got := systemTar(t, "-tzf", f); got != "./debian-binary\n./data.tar.gz\n./control.tar.gz\n" {
		t.Fatalf("outer members:\n%s", got)
	}
	outer := memberMap(readTar(t, gunzip(t, ipk)))
	data := memberMap(readTar(t, gunzip(t, outer["./data.tar.gz"].data)))
	for p, body := range want {
		m, ok := data["."+p]
		if !ok || !bytes.Equal(m.data, body) || fs.FileMode(m.hdr.Mode) != 0o644 {
			t.Errorf("ipk %s: present %v, mode %o", p, ok, m.hdr.Mode)
		}
	}
	ctl := memberMap(readTar(t, gunzip(t, outer["./control.tar.gz"].data)))
	_, fields := parseControl(t, string(ctl["./control"].data))
	if fields["Package"] != openwrt.LuCIPackage || fields["Architecture"] != "all" || fields["Section"] != "luci" ||
		fields["Depends"] != "edgerelay, luci-base" || fields["Version"] != v.OpenWrt || fields["License"] != wantMeta["license"] ||
		fields["Maintainer"] != wantMeta["maintainer"] || fields["URL"] != wantMeta["url"] {
		t.Errorf("control: %v", fields)
	}
	if _, ok := ctl["./conffiles"]; ok {
		t.Error("the LuCI app has no conffiles")
	}
	if !bytes.Equal(ctl["./postinst-pkg"].data, openwrt.LuCIPostinst) {
		t.Errorf("postinst-pkg %q", ctl["./postinst-pkg"].data)
	}

	// The feed recipe builds the same package inside the SDK.
	mk, err := os.ReadFile("../openwrt/" + openwrt.LuCIPackage + "/Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var deps []string
	for _, d := range luciDepends {
		deps = append(deps, "+"+d)
	}
	for _, line := range []string{"LUCI_DEPENDS:=" + strings.Join(deps, " "), "LUCI_PKGARCH:=all", "include $(TOPDIR)/feeds/luci/luci.mk"} {
		if !strings.Contains(string(mk), "\n"+line+"\n") {
			t.Errorf("feed Makefile lacks %q", line)
		}
	}

	raw, err := BuildLuCIAPK(v.OpenWrt, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodeAPK(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.Info["name"] != openwrt.LuCIPackage || p.Info["arch"] != "noarch" || p.Info["version"] != v.OpenWrt {
		t.Errorf("apk info %v", p.Info)
	}
	if strings.Join(p.Depends, " ") != "edgerelay luci-base" {
		t.Errorf("apk depends %v", p.Depends)
	}
	for k, want := range wantMeta {
		if p.Info[k] != want {
			t.Errorf("apk %s %q, want %q", k, p.Info[k], want)
		}
	}
	files := map[string][]byte{}
	for _, f := range p.Files {
		files[f.path()] = f.Data
		if f.Mode != 0o644 || f.User != "root" {
			t.Errorf("apk %s: mode %o owner %s", f.path(), f.Mode, f.User)
		}
	}
	for path, body := range want {
		if !bytes.Equal(files[path], body) {
			t.Errorf("apk %s missing or different", path)
		}
	}
	if got := string(files["/lib/apk/packages/"+openwrt.LuCIPackage+".list"]); strings.Count(got, "\n") != len(want) {
		t.Errorf("file list:\n%s", got)
	}
	if s := p.Scripts["post-install"]; !strings.Contains(s, "default_postinst\n") || !strings.Contains(s, "luci-indexcache") {
		t.Errorf("post-install:\n%s", s)
	}
}
