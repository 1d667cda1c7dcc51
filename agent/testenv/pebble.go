package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Pebble is a running Pebble ACME test server (Debian package pebble) on 127.0.0.1 of the
// current network namespace (use InNetNS first), validating DNS-01 against a given DNS
// server.
type Pebble struct {
	DirectoryURL  string // https://127.0.0.1:14000/dir
	ManagementURL string // https://127.0.0.1:15000
	// CACertFile is the PEM root that signed Pebble's own HTTPS certificate (acme.ca_cert_file).
	CACertFile string

	pool *x509.CertPool
	log  *LockedBuffer
}

// PebbleOptions select the Pebble build and its account policy.
type PebbleOptions struct {
	// EABKeys (key ID → base64url HMAC key) makes Pebble require External Account Binding.
	EABKeys map[string]string
	// Binary runs this pebble instead of Debian's /usr/bin/pebble (2.4.0, which has no ARI);
	// see BuildPebble.
	Binary string
	// Profiles (name → certificate lifetime) are the certificate profiles Pebble offers in
	// its directory and issues by (v2.8.0). Pebble picks one at random for an order that
	// names none.
	Profiles map[string]time.Duration
}

// BuildPebble builds Pebble v2.8.0 (ARI, profiles) from the module's tool dependency and
// returns its path. Call it once before InNetNS too, so the module download happens in the
// host namespace and the build inside the namespace is a cache hit.
func BuildPebble(t testing.TB) string {
	t.Helper()
	goBin := RequireCommand(t, "go")
	out := filepath.Join(t.TempDir(), "pebble")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building pebble from the tool dependency: %v\n%s", err, b)
	}
	return out
}

// StartPebble starts pebble with -dnsserver dnsServer, no validation sleep and no nonce
// rejection.
func StartPebble(t testing.TB, dnsServer string, opts PebbleOptions) *Pebble {
	t.Helper()
	RequireRoot(t)
	if os.Getenv(netnsEnv) == "" {
		t.Fatal("StartPebble binds fixed ports: call it only inside InNetNS")
	}
	bin := opts.Binary
	if bin == "" {
		bin = RequireCommand(t, "pebble")
	}
	eabKeys := opts.EABKeys
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := serverCert(t, "localhost", net.IPv4(127, 0, 0, 1))
	p := &Pebble{
		DirectoryURL: "https://127.0.0.1:14000/dir", ManagementURL: "https://127.0.0.1:15000",
		CACertFile: filepath.Join(dir, "ca.pem"), log: &LockedBuffer{}, pool: x509.NewCertPool(),
	}
	p.pool.AppendCertsFromPEM(caPEM)
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("ca.pem", caPEM)
	conf := map[string]any{
		"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
		"certificate": write("cert.pem", certPEM), "privateKey": write("key.pem", keyPEM),
		"httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": eabKeys != nil,
	}
	if eabKeys != nil {
		conf["externalAccountMACKeys"] = eabKeys
	}
	if opts.Profiles != nil {
		profiles := map[string]any{}
		for name, life := range opts.Profiles {
			profiles[name] = map[string]any{"description": name, "validityPeriod": int64(life / time.Second)}
		}
		conf["profiles"] = profiles
	}
	cfg, _ := json.Marshal(map[string]any{"pebble": conf})
	cmd := exec.Command(bin, "-config", write("pebble.json", cfg), "-dnsserver", dnsServer)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := p.Client().Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer within 20 s: %v; its log:\n%s", err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client returns an HTTP client trusting Pebble's HTTPS certificate.
func (p *Pebble) Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
}

// Root returns the root of the chains Pebble issues (fresh on each start), from its
// management endpoint /roots/0.
func (p *Pebble) Root() (*x509.Certificate, error) {
	resp, err := p.Client().Get(p.ManagementURL + "/roots/0")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("/roots/0: no PEM in %q", b)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// Log returns pebble's output so far.
func (p *Pebble) Log() string { return p.log.String() }

// serverCert makes a throwaway CA and a server certificate for name and ip, as PEM.
func serverCert(t testing.TB, name string, ip net.IP) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgerelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{name}, IPAddresses: []net.IP{ip},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// SetRenewalInfo makes Pebble's ARI answer for cert (PEM) be ariJSON (v2.8.0 only).
func (p *Pebble) SetRenewalInfo(certPEM []byte, ariJSON string) error {
	body, _ := json.Marshal(map[string]string{"Certificate": string(certPEM), "ARIResponse": ariJSON})
	resp, err := p.Client().Post(p.ManagementURL+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("set-renewal-info: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}
