package derp

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"time"
)

// newMetaCert makes the throw-away certificate appended to the TLS chain that carries the
// server's DERP key (CN "derpkey<hex>") and protocol version (serial). Clients on TLS 1.3
// read it and skip waiting for the ServerKey frame ("fast start"). Clients verifying the
// chain ignore certificates whose CN starts with "derpkey".
func newMetaCert(pub Key) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ProtocolVersion),
		Subject:               pkix.Name{CommonName: "derpkey" + pub.HexString()},
		NotBefore:             time.Now().Add(-30 * 24 * time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
}

// WithMetaCert returns a copy of cert whose chain ends with the meta certificate. The
// caller's certificate is never modified (mutating a shared chain per handshake was a
// derper data race).
func (s *Server) WithMetaCert(cert *tls.Certificate) *tls.Certificate {
	c := *cert
	chain := make([][]byte, 0, len(cert.Certificate)+1)
	c.Certificate = append(append(chain, cert.Certificate...), s.metaCert)
	return &c
}
