// Package packaging builds the OpenWrt .ipk and .apk (apk-tools v3) packages and the
// Synology .spk from cross-compiled edgerelay binaries.
package packaging
