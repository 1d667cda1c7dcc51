// Package pin handles DERP map CertName pins ("sha256-raw:<hex>"): the hash that makes a
// client trust exactly one self-signed certificate, as Tailscale clients do.
package pin

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Of is the "sha256-raw:" pin of a DER certificate.
func Of(der []byte) string {
	h := sha256.Sum256(der)
	return "sha256-raw:" + hex.EncodeToString(h[:])
}

// Trust makes cfg accept exactly the peer certificate with pin p, in place of chain
// verification (the meta cert carrying the DERP key never matches a pin).
func Trust(cfg *tls.Config, p string) {
	p = strings.ToLower(p)
	cfg.InsecureSkipVerify = true // replaced by the pin check below
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		for _, der := range raw {
			if Of(der) == p {
				return nil
			}
		}
		return fmt.Errorf("no certificate matches the pin %s", p)
	}
}
