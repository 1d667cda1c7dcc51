// Package edgerelay holds what every package and image built from this module states about
// the project: the license text (BSD-3-Clause asks binary redistributions to reproduce it),
// its identifier, maintainer and home page, and the web page's port.
package edgerelay

import _ "embed"

// License is the LICENSE file at the module root.
//
//go:embed LICENSE
var License []byte

// Package metadata every package format carries.
const (
	// LicenseID is License's SPDX identifier.
	LicenseID = "BSD-3-Clause"
	// Maintainer is who answers for the packages; reports go to URL's issue tracker.
	Maintainer = "edgerelay developers"
	// URL is the project's home page.
	URL = "https://github.com/edgerelay/edgerelay"
)

// WebPort is the web page's TCP port in the Synology package and the container image (the
// OpenWrt package leaves the page off: LuCI is there).
const WebPort = 8021
