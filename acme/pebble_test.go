package acme

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/certificate"
	"github.com/miekg/dns"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

func testLog(t *testing.T) (*slog.Logger, *testenv.LockedBuffer) {
	buf := &testenv.LockedBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(buf, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// counter counts requests to the CA by kind and keeps the "replaces" field of each new
// order (decoded from the JWS payload).
type counter struct {
	rt                   http.RoundTripper
	orders, account, all atomic.Int32
	mu                   sync.Mutex
	replaces             []string
	profiles             []string
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.all.Add(1)
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz"):
		c.orders.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var jws struct{ Payload string }
		var order struct{ Replaces, Profile string }
		json.Unmarshal(body, &jws)
		payload, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
		json.Unmarshal(payload, &order)
		c.mu.Lock()
		c.replaces = append(c.replaces, order.Replaces)
		c.profiles = append(c.profiles, order.Profile)
		c.mu.Unlock()
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/sign-me-up"):
		c.account.Add(1)
	}
	return c.rt.RoundTrip(r)
}

func serial(c *tls.Certificate) string { return hex.EncodeToString(c.Leaf.SerialNumber.Bytes()) }

// TestPebble obtains a certificate from a real ACME server (Pebble) that validates DNS-01
// against a real BIND9 updated over RFC 2136, serves it over TLS, renews it on demand, and
// reuses it after a restart without a new order.
func TestPebble(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test", "delegated.test")
	// alt's challenge name is delegated by CNAME to another zone.
	if err := ns.Update("example.test", "_acme-challenge.alt.example.test. 60 IN CNAME _acme-challenge.alt.delegated.test."); err != nil {
		t.Fatal(err)
	}
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{})
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	cfg := Config{
		Email: "admin@example.test", Directory: peb.DirectoryURL,
		Domains:   []string{"derp.example.test", "alt.example.test"},
		Resolvers: []string{ns.Addr}, PropagationTimeout: 30 * time.Second,
		CACertFile: peb.CACertFile,
	}
	timing := Timing{PollInterval: 200 * time.Millisecond, RetryMin: time.Second, RetryMax: 2 * time.Second}
	cnt := &counter{}
	log, logBuf := testLog(t)
	var changes atomic.Int32
	m, err := New(cfg, dnsp, stateDir, log, WithTiming(timing),
		WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { cnt.rt = rt; return cnt }),
		WithSubscriber(func(CertChange) { changes.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(nil); err == nil {
		t.Fatal("a certificate before any order")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	start := time.Now()
	var first *tls.Certificate
	for first == nil {
		if c, err := m.GetCertificate(nil); err == nil {
			first = c
		} else if time.Since(start) > 90*time.Second {
			t.Fatalf("no certificate after 90 s; pebble log:\n%s", peb.Log())
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("FIGURE acme first certificate: %v (account, order, 2 DNS-01 validations against BIND9)", time.Since(start).Round(time.Millisecond))
	t.Logf("certificate %s valid %v to %v, names %v", serial(first), first.Leaf.NotBefore, first.Leaf.NotAfter, first.Leaf.DNSNames)
	if !m.Expiry().Equal(first.Leaf.NotAfter) {
		t.Errorf("Expiry %v, leaf %v", m.Expiry(), first.Leaf.NotAfter)
	}

	// The CNAME-delegated challenge went to the delegated zone, and every challenge
	// record is gone again.
	if !strings.Contains(logBuf.String(), "record=_acme-challenge.alt.delegated.test.") {
		t.Errorf("the alt challenge was not written to the delegated zone")
	}
	for _, name := range []string{"_acme-challenge.derp.example.test", "_acme-challenge.alt.delegated.test"} {
		rrs, err := ns.Lookup(name, dns.TypeTXT)
		if err != nil || len(rrs) != 0 {
			t.Errorf("%s TXT after issuance: %v %v", name, rrs, err)
		}
	}

	// Serve it over TLS and check it against Pebble's root.
	root, err := peb.Root()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoServer(ln)
	dial := func(name string) (*tls.Conn, string) {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Fatalf("TLS to %s with Pebble's root: %v", name, err)
		}
		return c, hex.EncodeToString(c.ConnectionState().PeerCertificates[0].SerialNumber.Bytes())
	}
	held, got := dial("derp.example.test")
	defer held.Close()
	if got != serial(first) {
		t.Fatalf("served serial %s, manager has %s", got, serial(first))
	}
	c2, _ := dial("alt.example.test")
	c2.Close()
	ping(t, held, "before renewal")

	// Forced renewal: a new certificate for the next handshake; the held connection lives on.
	if err := m.Renew(context.Background()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	second, _ := m.GetCertificate(nil)
	if serial(second) == serial(first) {
		t.Fatal("renewal kept the same certificate")
	}
	c3, got := dial("derp.example.test")
	c3.Close()
	if got != serial(second) {
		t.Errorf("after renewal served %s, want %s", got, serial(second))
	}
	ping(t, held, "after renewal")
	if n := cnt.orders.Load(); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}

	// DNS server down: the renewal fails, the current certificate keeps serving.
	ns.Stop()
	if err := m.Renew(context.Background()); err == nil {
		t.Error("renewal succeeded with the DNS server down")
	} else {
		t.Logf("renewal with BIND9 down: %v", err)
	}
	if c, _ := m.GetCertificate(nil); serial(c) != serial(second) {
		t.Error("a failed renewal changed the served certificate")
	}
	ns.Start()

	cancel()
	<-done
	if n := changes.Load(); n != 2 {
		t.Errorf("%d CertChange events, want 2", n)
	}
	for _, f := range []string{certName(m.domains, ""), accountName(cfg.Directory) + ".json"} {
		fi, err := os.Stat(filepath.Join(stateDir, "acme", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}

	// Restart on the same state: the stored certificate serves at once and no order or
	// registration reaches the CA.
	cnt2 := &counter{}
	log2, _ := testLog(t)
	m2, err := New(cfg, dnsp, stateDir, log2, WithTiming(timing),
		WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { cnt2.rt = rt; return cnt2 }))
	if err != nil {
		t.Fatal(err)
	}
	c, err := m2.GetCertificate(nil)
	if err != nil || serial(c) != serial(second) {
		t.Fatalf("after restart: %v %v", c, err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- m2.Run(ctx) }()
	time.Sleep(3 * time.Second)
	cancel()
	<-done
	if o, a := cnt2.orders.Load(), cnt2.account.Load(); o != 0 || a != 0 {
		t.Errorf("restart sent %d orders and %d registrations, want none", o, a)
	}

	// A first start while the DNS server is down: Run keeps retrying with backoff and gets
	// its certificate once named is back.
	ns.Stop()
	log3, logBuf3 := testLog(t)
	m3, err := New(cfg, dnsp, t.TempDir(), log3, WithTiming(timing))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done3 := make(chan struct{})
	go func() { m3.Run(ctx); close(done3) }()
	defer func() { cancel(); <-done3 }() // Run writes into the temp dir until it returns
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logBuf3.String(), "certificate order failed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no failed order reported while named is down")
		}
	}
	ns.Start()
	back := time.Now()
	for m3.Leaf() == nil {
		if time.Since(back) > 60*time.Second {
			t.Fatal("no certificate 60 s after named came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("FIGURE acme retry: certificate %v after named came back", time.Since(back).Round(time.Millisecond))
}

func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func ping(t *testing.T, c *tls.Conn, when string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("held connection %s: %v", when, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("held connection %s: %q %v", when, line, err)
	}
}

// TestPebbleEAB registers through External Account Binding with a CA that requires it, and
// shows that a wrong HMAC key is refused with the CA's reason.
func TestPebbleEAB(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	const kid, hmac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{EABKeys: map[string]string{kid: hmac}})
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Email: "admin@example.test", Directory: peb.DirectoryURL, Domains: []string{"derp.example.test"},
		Resolvers: []string{ns.Addr}, PropagationTimeout: 30 * time.Second, CACertFile: peb.CACertFile,
		EAB: EAB{KID: kid, HMAC: "d3JvbmcgaG1hYyBrZXkgZm9yIHRoZSB0ZXN0IGNhc2U"},
	}
	log, _ := testLog(t)
	timing := Timing{PollInterval: 200 * time.Millisecond}
	m, err := New(cfg, dnsp, t.TempDir(), log, WithTiming(timing))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Renew(context.Background())
	if err == nil || !strings.Contains(err.Error(), "registering the ACME account") {
		t.Fatalf("wrong EAB key: %v", err)
	}
	t.Logf("wrong EAB key: %v", err)

	cfg.EAB.HMAC = hmac // (a hmac_file is read by the config loader)
	m, err = New(cfg, dnsp, t.TempDir(), log, WithTiming(timing))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Renew(context.Background()); err != nil {
		t.Fatalf("with EAB: %v", err)
	}
	if m.Leaf() == nil || m.Leaf().DNSNames[0] != "derp.example.test" {
		t.Fatalf("no certificate after EAB registration")
	}
}

// TestPebbleARI renews on the CA's ARI window: Pebble v2.8.0 (built from the tool
// dependency; Debian's 2.4.0 has no ARI) first answers with a window months away, so
// nothing happens; once the window is moved to now, Run renews by itself with an order that
// names the certificate it replaces.
func TestPebbleARI(t *testing.T) {
	bin := testenv.BuildPebble(t)
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{Binary: bin})
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Email: "admin@example.test", Directory: peb.DirectoryURL, Domains: []string{"derp.example.test"},
		Resolvers: []string{ns.Addr}, PropagationTimeout: 30 * time.Second, CACertFile: peb.CACertFile,
	}
	cnt := &counter{}
	log, logBuf := testLog(t)
	m, err := New(cfg, dnsp, t.TempDir(), log,
		WithTiming(Timing{PollInterval: 200 * time.Millisecond, CheckInterval: 500 * time.Millisecond, RetryMin: time.Second}),
		WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { cnt.rt = rt; return cnt }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }() // Run writes into the temp dir until it returns
	waitLeaf := func(not string) *x509.Certificate {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if l := m.Leaf(); l != nil && hex.EncodeToString(l.SerialNumber.Bytes()) != not {
				return l
			}
		}
		t.Fatalf("no new certificate within 60 s")
		return nil
	}
	first := waitLeaf("")
	time.Sleep(2 * time.Second) // several ARI checks while the window is far away
	if n := cnt.orders.Load(); n != 1 {
		t.Fatalf("%d orders before the ARI window opened, want 1", n)
	}
	if !strings.Contains(logBuf.String(), "ARI window not open yet") {
		t.Errorf("the CA's ARI window was not consulted")
	}

	now := time.Now().UTC()
	window := fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q}}`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(-time.Minute).Format(time.RFC3339))
	if err := peb.SetRenewalInfo(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first.Raw}), window); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	second := waitLeaf(hex.EncodeToString(first.SerialNumber.Bytes()))
	t.Logf("FIGURE acme ARI renewal: new certificate %v after the window was moved to now", time.Since(moved).Round(time.Millisecond))
	wantID, _ := certificate.MakeARICertID(first)
	cnt.mu.Lock()
	replaces := slices.Clone(cnt.replaces)
	cnt.mu.Unlock()
	if len(replaces) != 2 || replaces[0] != "" || replaces[1] != wantID {
		t.Errorf("orders carried replaces=%q, want [\"\" %q]", replaces, wantID)
	}
	time.Sleep(2 * time.Second)
	if n := cnt.orders.Load(); n != 2 {
		t.Errorf("%d orders after the renewal settled, want 2", n)
	}
	if second.NotAfter.Before(first.NotAfter) {
		t.Errorf("renewed certificate expires earlier")
	}
}
