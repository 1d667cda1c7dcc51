// Package edgerelay carries the project's license text, so that every package and image
// built from this module ships the exact LICENSE file (BSD-3-Clause asks binary
// redistributions to reproduce it).
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
