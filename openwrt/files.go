package openwrt

import (
	_ "embed"

	"github.com/edgerelay/edgerelay"
)

// The shipped files, byte for byte. Paths and modes on the router are in Install.

var (
	//go:embed files/edgerelay.init
	InitScript []byte
	//go:embed files/edgerelay.config
	DefaultConfig []byte
	//go:embed files/edgerelay.uci-defaults
	UCIDefaults []byte
	//go:embed files/edgerelay.hotplug
	HotplugIface []byte
	// PostinstPkg and PrermPkg are the package's own install/removal logic, run by
	// OpenWrt's default_postinst/default_prerm (postinst-pkg, prerm-pkg).
	//go:embed files/edgerelay.postinst
	PostinstPkg []byte
	//go:embed files/edgerelay.prerm
	PrermPkg []byte
	// FeedMakefile is the recipe for building the same package inside the OpenWrt SDK.
	//go:embed Makefile
	FeedMakefile []byte
)

// File is one file the package installs.
type File struct {
	Path string // on the router
	Mode uint32 // permission bits
	Data []byte
	// Conffile files are kept across upgrades and removal.
	Conffile bool
}

// Install lists the files the OpenWrt package installs besides the binary, with OpenWrt's
// install modes (INSTALL_BIN 0755, INSTALL_CONF 0600, INSTALL_DATA 0644).
func Install() []File {
	return []File{
		{Path: "/etc/init.d/edgerelay", Mode: 0o755, Data: InitScript},
		// 0600: the file may hold DNS API tokens.
		{Path: "/etc/config/edgerelay", Mode: 0o600, Data: DefaultConfig, Conffile: true},
		{Path: "/etc/uci-defaults/90-edgerelay", Mode: 0o755, Data: UCIDefaults},
		// hotplug-call sources these; OpenWrt installs them 0644.
		{Path: "/etc/hotplug.d/iface/95-edgerelay", Mode: 0o644, Data: HotplugIface},
		// BSD-3-Clause asks binary redistributions to carry the license text.
		{Path: LicensePath, Mode: 0o644, Data: edgerelay.License},
	}
}

// LicensePath is where the package installs the LICENSE file.
const LicensePath = "/usr/share/licenses/edgerelay/LICENSE"

// BinaryPath is where the OpenWrt package installs the daemon.
const BinaryPath = "/usr/sbin/edgerelay"

// StateDir is the state directory the default config names. It is listed as a conffile
// directory, so sysupgrade keeps it (ACME account, keys, certificates).
const StateDir = "/etc/edgerelay"

// Conffiles is the recipe's conffiles list, in its order.
var Conffiles = []string{"/etc/config/edgerelay", StateDir + "/"}

// The LuCI app (luci-app-edgerelay, arch all): a view of /etc/config/edgerelay with the
// daemon's status and DERP map, its menu entry, and the rpcd ACL that lets the view read and
// write the config and run exactly `edgerelay status` and `edgerelay derpmap`.
var (
	//go:embed luci-app-edgerelay/htdocs/luci-static/resources/view/edgerelay.js
	LuCIView []byte
	//go:embed luci-app-edgerelay/root/usr/share/luci/menu.d/luci-app-edgerelay.json
	LuCIMenu []byte
	//go:embed luci-app-edgerelay/root/usr/share/rpcd/acl.d/luci-app-edgerelay.json
	LuCIACL []byte
)

// LuCIPackage is the LuCI app's package name.
const LuCIPackage = "luci-app-edgerelay"

// LuCIInstall lists the LuCI app's files with the modes luci.mk installs them with.
func LuCIInstall() []File {
	return []File{
		{Path: "/www/luci-static/resources/view/edgerelay.js", Mode: 0o644, Data: LuCIView},
		{Path: "/usr/share/luci/menu.d/" + LuCIPackage + ".json", Mode: 0o644, Data: LuCIMenu},
		{Path: "/usr/share/rpcd/acl.d/" + LuCIPackage + ".json", Mode: 0o644, Data: LuCIACL},
	}
}

// LuCIPostinst is luci.mk's postinst body for the LuCI app.
//
//go:embed files/luci.postinst
var LuCIPostinst []byte
