// Package synology holds the files of the Synology DSM 7 package: the package scripts, the
// privilege and resource declarations, the DSM firewall service file, the DSM desktop
// entry for the web page (ui/config) and the default config. They are embedded so the .spk builder ships exactly these bytes.
package synology

import "embed"

// Files are the shipped files by path relative to this directory.
//
//go:embed scripts conf ui edgerelay.sc config.yaml
var Files embed.FS

// UIIconSizes are the sizes DSM picks the desktop icon from (ui/config's {0}).
var UIIconSizes = []int{16, 24, 32, 48, 64, 72, 256}

// Scripts are the DSM package scripts, all in scripts/.
var Scripts = []string{"preinst", "postinst", "preuninst", "postuninst", "preupgrade", "postupgrade", "start-stop-status"}
