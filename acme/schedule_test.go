package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/ddns/provider"
)

func TestFallbackRenewAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		life time.Duration
		want time.Duration
	}{
		{90 * 24 * time.Hour, 60 * 24 * time.Hour},
		{45 * 24 * time.Hour, 30 * 24 * time.Hour},
		{160 * time.Hour, 80 * time.Hour}, // short-lived: half
	} {
		leaf := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(tt.life)}
		if got := fallbackRenewAt(leaf).Sub(t0); got != tt.want {
			t.Errorf("lifetime %v: renew after %v, want %v", tt.life, got, tt.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	want := []time.Duration{time.Minute, 10 * time.Minute, 100 * time.Minute, 24 * time.Hour, 24 * time.Hour}
	for i, w := range want {
		if got := retryDelay(i+1, time.Minute, 24*time.Hour); got != w {
			t.Errorf("failure %d: %v, want %v", i+1, got, w)
		}
	}
}

func TestCovers(t *testing.T) {
	leaf := &x509.Certificate{DNSNames: []string{"b.example.com", "A.example.com"}}
	if !covers(leaf, []string{"a.example.com", "b.example.com."}) {
		t.Error("same names in another order/case not covered")
	}
	if covers(leaf, []string{"a.example.com"}) || covers(leaf, []string{"a.example.com", "b.example.com", "c.example.com"}) {
		t.Error("different name set covered")
	}
}

func selfSigned(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), DNSNames: names, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := encodeKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k
}

func TestStoreRoundTrip(t *testing.T) {
	s := store{dir: filepath.Join(t.TempDir(), "acme")}
	domains := []string{"derp.example.com"}
	if c, err := s.loadCert(domains); c != nil || err != nil {
		t.Fatalf("empty store: %v %v", c, err)
	}
	cert, key := selfSigned(t, domains...)
	if err := s.saveCert(domains, cert, key); err != nil {
		t.Fatal(err)
	}
	c, err := s.loadCert(domains)
	if err != nil || c == nil || c.Leaf.DNSNames[0] != "derp.example.com" {
		t.Fatalf("loadCert: %v %v", c, err)
	}
	fi, _ := os.Stat(filepath.Join(s.dir, certName(domains, "")))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cert file mode %v", fi.Mode())
	}
	a, stored, err := s.loadAccount("https://ca.example/dir", "me@example.com")
	if err != nil || stored {
		t.Fatalf("new account: %v %v", stored, err)
	}
	if err := s.saveAccount("https://ca.example/dir", a); err != nil {
		t.Fatal(err)
	}
	b, stored, err := s.loadAccount("https://ca.example/dir", "me@example.com")
	if err != nil || !stored || !b.key.Public().(*ecdsa.PublicKey).Equal(a.key.Public()) {
		t.Fatalf("reloaded account: %v %v", stored, err)
	}
	if _, stored, _ := s.loadAccount("https://other.example/dir", "me@example.com"); stored {
		t.Error("an account for one CA was reused for another")
	}
}

// FuzzParseCertFile checks that a damaged certificate file is an error, never a crash or a
// certificate whose key does not match.
func FuzzParseCertFile(f *testing.F) {
	cert, key := selfSigned(f, "derp.example.com")
	f.Add(append(append([]byte{}, cert...), key...))
	f.Add(cert)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add(bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\n"), 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCertFile(b)
		if err == nil && (c == nil || c.Leaf == nil) {
			t.Fatal("no certificate without error")
		}
	})
}

func TestNew(t *testing.T) {
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: "127.0.0.1", KeyName: "k", Key: "c2VjcmV0"}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ok := Config{Directory: "https://ca.example/dir", Domains: []string{"derp.example.com"}}
	if _, err := New(ok, nil, "", nil); err == nil {
		t.Error("no DNS provider accepted")
	}
	if _, err := New(Config{Directory: ok.Directory}, dnsp, "", nil); err == nil {
		t.Error("no domains accepted")
	}

	// A stored certificate for other names is not served; one for these names is, at once.
	dir := t.TempDir()
	s := store{dir: filepath.Join(dir, "acme")}
	cert, key := selfSigned(t, "derp.example.com", "extra.example.com")
	s.saveCert(ok.Domains, cert, key)
	m, err := New(ok, dnsp, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(nil); err == nil {
		t.Error("served a stored certificate for other names")
	}
	cert, key = selfSigned(t, "derp.example.com")
	s.saveCert(ok.Domains, cert, key)
	if m, _ = New(ok, dnsp, dir, nil); m.Expiry().IsZero() {
		t.Error("stored certificate not served")
	}
}

func TestLifeBound(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		life, d, want time.Duration
	}{
		{160 * time.Hour, 12 * time.Hour, 12 * time.Hour},     // 6-day: a tenth is 16 h
		{160 * time.Hour, 24 * time.Hour, 16 * time.Hour},     // retries capped at a tenth
		{90 * 24 * time.Hour, 24 * time.Hour, 24 * time.Hour}, // long-lived: unchanged
		{5 * time.Minute, time.Hour, time.Minute},             // the tenth never below a minute
		{90 * 24 * time.Hour, time.Second, time.Second},       // a shorter interval stands
	} {
		leaf := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(tt.life)}
		if got := lifeBound(leaf, tt.d); got != tt.want {
			t.Errorf("lifetime %v, %v: got %v, want %v", tt.life, tt.d, got, tt.want)
		}
	}
	if got := lifeBound(nil, time.Hour); got != time.Hour {
		t.Errorf("no certificate: %v", got)
	}
}
