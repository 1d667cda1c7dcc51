package relay

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a fresh self-signed pair for host to certFile/keyFile and returns its leaf.
func writePair(t *testing.T, dir, host, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	tmp := t.TempDir()
	ss, err := LoadOrCreateSelfSigned(tmp, host)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"selfsigned.crt": certFile, "selfsigned.key": keyFile} {
		b, err := os.ReadFile(filepath.Join(tmp, from))
		if err != nil {
			t.Fatal(err)
		}
		// Write through a rename, as a cert tool would, so the mtime changes.
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	return Leaf(ss.cert)
}

func TestManualCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "any-name.pem"), filepath.Join(dir, "other-name.key")
	first := writePair(t, dir, "derp.example.com", certFile, keyFile)
	m, err := NewManualCert(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m.recheck = 0
	serial := func() string {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return Leaf(c).SerialNumber.String()
	}
	if got := serial(); got != first.SerialNumber.String() {
		t.Fatal("not serving the first certificate")
	}
	time.Sleep(10 * time.Millisecond) // mtime granularity
	second := writePair(t, dir, "derp.example.com", certFile, keyFile)
	if got := serial(); got != second.SerialNumber.String() {
		t.Fatal("a replaced certificate was not picked up")
	}
	// A broken replacement is ignored: the previous certificate keeps being served.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	if got := serial(); got != second.SerialNumber.String() {
		t.Fatal("a broken file replaced the working certificate")
	}
	if _, err := NewManualCert(filepath.Join(dir, "missing.pem"), keyFile, nil); err == nil {
		t.Fatal("missing files accepted")
	}
}

func TestSelfSignedPersists(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateSelfSigned(dir, "192.0.2.10")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSelfSigned(dir, "192.0.2.10")
	if err != nil {
		t.Fatal(err)
	}
	if a.Pin() != b.Pin() {
		t.Fatal("the pin changed across restarts")
	}
	if err := Leaf(a.cert).VerifyHostname("192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "selfsigned.key"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	c, err := LoadOrCreateSelfSigned(dir, "derp.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if c.Pin() == a.Pin() || Leaf(c.cert).VerifyHostname("derp.example.com") != nil {
		t.Fatal("a hostname change did not make a new certificate for it")
	}
}

// TestSelfSignedIPOnlyKeepsPin: when an IP-only relay's address moves, its certificate (and
// the pin every pasted map carries) stays.
func TestSelfSignedIPOnlyKeepsPin(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateSelfSigned(dir, "2001:db8::7")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSelfSigned(dir, "2001:db8:1::9")
	if err != nil {
		t.Fatal(err)
	}
	if a.Pin() != b.Pin() {
		t.Fatal("an address change made a new certificate")
	}
}
