package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"github.com/edgerelay/edgerelay/relay/pin"
)

// CertSource gives the relay its certificate for each TLS handshake. The manual and
// self-signed sources live here; the acme part provides one too. A source that swaps its
// certificate is seen at the next handshake: no restart, no dropped connections.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// ManualCert serves a certificate and key from files the user names, re-reading them when
// they change on disk (checked at most every few seconds, on handshakes). A broken
// replacement is logged and the previous certificate keeps being served.
type ManualCert struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // mtimes and sizes of the files the cert came from
	checked time.Time
	recheck time.Duration // how often handshakes look at the files
}

// NewManualCert loads the files once; an error here means the files are unusable.
func NewManualCert(certFile, keyFile string, log *slog.Logger) (*ManualCert, error) {
	m := &ManualCert{certFile: certFile, keyFile: keyFile, log: log, recheck: 5 * time.Second}
	if err := m.reload(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *ManualCert) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{m.certFile, m.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
	}
	return stamp, nil
}

func (m *ManualCert) reload() error {
	stamp, err := m.fileStamp()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(m.certFile, m.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", m.certFile, m.keyFile, err)
	}
	m.cert, m.stamp = &cert, stamp
	return nil
}

// GetCertificate returns the current certificate, reloading it if the files changed.
func (m *ManualCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := time.Now(); now.Sub(m.checked) >= m.recheck {
		m.checked = now
		if stamp, err := m.fileStamp(); err == nil && stamp != m.stamp {
			if err := m.reload(); err != nil {
				m.stamp = stamp // do not retry a broken file on every handshake
				m.log.Warn("certificate files changed but cannot be loaded; serving the previous one", "err", err)
			} else {
				m.log.Info("certificate reloaded from disk", "file", m.certFile, "not_after", Leaf(m.cert).NotAfter)
			}
		}
	}
	return m.cert, nil
}

// SelfSigned is a persisted self-signed ECDSA certificate for the relay's hostname or IP.
// Clients trust it through the DERP map's CertName "sha256-raw:" pin, so it must stay the
// same across restarts.
type SelfSigned struct {
	cert *tls.Certificate
}

const selfSignedLifetime = 5 * 365 * 24 * time.Hour

// LoadOrCreateSelfSigned reuses the certificate in dir when it covers host and is not about
// to expire, otherwise creates one. An IP-only relay (host an IP) keeps a certificate made
// for another IP: the line's address moved, and clients trust the pin, not the address, so
// a new certificate would only make every pasted map stale.
func LoadOrCreateSelfSigned(dir, host string) (*SelfSigned, error) {
	certFile, keyFile := filepath.Join(dir, "selfsigned.crt"), filepath.Join(dir, "selfsigned.key")
	if cert, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		leaf := Leaf(&cert)
		ipOnly := net.ParseIP(host) != nil && leaf != nil && len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) > 0
		if leaf != nil && (leaf.VerifyHostname(host) == nil || ipOnly) && time.Until(leaf.NotAfter) > 30*24*time.Hour {
			return &SelfSigned{cert: &cert}, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(selfSignedLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("self-signed key: %w", err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("self-signed cert: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &SelfSigned{cert: &cert}, nil
}

// GetCertificate serves the self-signed certificate whatever the SNI (IP-only clients send none).
func (s *SelfSigned) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

// Pin is the DERP map CertName that makes clients trust exactly this certificate.
func (s *SelfSigned) Pin() string { return pin.Of(s.cert.Certificate[0]) }

// Leaf parses the leaf of a certificate chain (nil if there is none).
func Leaf(c *tls.Certificate) *x509.Certificate {
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// errNoCert is returned to clients when the source has nothing to serve yet (acme pending).
var errNoCert = errors.New("tls: no certificate available yet")
