// Package synology holds the files of the Synology DSM 7 package: the package scripts, the
// privilege and resource declarations, the DSM firewall service file and the default
// config. They are embedded so the .spk builder ships exactly these bytes.
package synology

import "embed"

// Files are the shipped files by path relative to this directory.
//
//go:embed scripts conf edgerelay.sc config.yaml
var Files embed.FS

// Scripts are the DSM package scripts, all in scripts/.
var Scripts = []string{"preinst", "postinst", "preuninst", "postuninst", "preupgrade", "postupgrade", "start-stop-status"}
