package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// startDERP serves our DERP server with v as its admission check on a loopback TLS listener
// (with the meta cert, so TLS 1.3 clients use fast start) and returns its region.
func startDERP(t *testing.T, v *Verifier) (*derp.Server, *tailcfg.DERPRegion) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveDERP(t, v, ln)
}

// serveDERP serves on ln (which may live in another network namespace).
func serveDERP(t *testing.T, v *Verifier, ln net.Listener) (*derp.Server, *tailcfg.DERPRegion) {
	t.Helper()
	priv, err := derp.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := derp.NewServer(priv, derp.Options{
		Verify: func(ctx context.Context, k derp.Key, src netip.Addr) error { return v.Check(ctx, k, src) },
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t)
	withMeta := s.WithMetaCert(&cert)
	mux := http.NewServeMux()
	mux.Handle("/derp", s)
	mux.HandleFunc("/derp/latency-check", func(http.ResponseWriter, *http.Request) {}) // netcheck's HTTPS fallback
	srv := &http.Server{Handler: mux, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	go srv.Serve(tls.NewListener(ln, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return withMeta, nil },
		NextProtos:     []string{"http/1.1"},
	}))
	t.Cleanup(func() { srv.Close(); s.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return s, &tailcfg.DERPRegion{RegionID: 900, RegionCode: "test", Nodes: []*tailcfg.DERPNode{{
		Name: "900a", RegionID: 900, HostName: "localhost", IPv4: "127.0.0.1", IPv6: "none",
		DERPPort: port, InsecureForTests: true,
	}}}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// expectRefused connects a real Tailscale DERP client with priv and checks the server closes
// the connection without sending ServerInfo.
func expectRefused(t *testing.T, region *tailcfg.DERPRegion, priv key.NodePrivate, tune func(*derphttp.Client)) {
	t.Helper()
	var tunes []func(*derphttp.Client)
	if tune != nil {
		tunes = append(tunes, tune)
	}
	if !derptest.Refused(t, region, priv, tunes...) {
		t.Fatal("the server sent ServerInfo to a client it should refuse")
	}
}

// TestDERPAdmission runs our DERP server with the verifier and real Tailscale clients: a key
// from the allow list and a key the admission URL approves relay packets to each other; a
// stranger's connection is closed before ServerInfo, over fast start and the classic
// upgrade, and it never becomes reachable.
func TestDERPAdmission(t *testing.T) {
	hs := newAdmissionServer(t)
	listed, approved, stranger := key.NewNode(), key.NewNode(), key.NewNode()
	hs.register(raw(approved.Public()), true)
	v, err := New(Config{
		Allow: []string{listed.Public().String()},
		URL:   hs.URL + "/verify",
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s, region := startDERP(t, v)

	a := derptest.Connect(t, region, listed)
	b := derptest.Connect(t, region, approved)
	if got := hs.lastSource(); got != "127.0.0.1" {
		t.Errorf("admission URL saw Source %q, want the client's IP 127.0.0.1", got)
	}
	a.Send(b.Pub(), []byte("listed to approved"))
	b.ExpectPacket(a.Pub(), []byte("listed to approved"))
	b.Send(a.Pub(), derptest.Pattern(1200, 1))
	a.ExpectPacket(b.Pub(), derptest.Pattern(1200, 1))

	t.Run("fast start", func(t *testing.T) {
		before := s.Stats().FastStarts.Load()
		expectRefused(t, region, stranger, nil)
		if s.Stats().FastStarts.Load() == before {
			t.Error("the client did not use fast start")
		}
	})
	t.Run("classic upgrade", func(t *testing.T) {
		before := s.Stats().FastStarts.Load()
		expectRefused(t, region, stranger, func(c *derphttp.Client) {
			c.TLSConfig = &tls.Config{MaxVersion: tls.VersionTLS12}
		})
		if s.Stats().FastStarts.Load() != before {
			t.Error("the TLS 1.2 client used fast start")
		}
	})
	// The stranger was never registered: a disco packet to it gets PeerGone(NotHere).
	a.Send(stranger.Public(), derptest.DiscoPacket())
	a.ExpectPeerGone(stranger.Public(), tsderp.PeerGoneReasonNotHere)

	// A reconnect of the approved client is answered from the cache.
	b.Client.Close()
	b2 := derptest.Connect(t, region, approved)
	a.Send(b2.Pub(), []byte("after reconnect"))
	b2.ExpectPacket(a.Pub(), []byte("after reconnect"))

	st := v.Stats()
	t.Logf("verifier: %+v; server rejected %d, accepted %d", st, s.Stats().Rejected.Load(), s.Stats().Accepts.Load())
	if st.Allow.Admitted != 1 || st.URL.Admitted != 2 || st.CacheHits != 1 {
		t.Errorf("admissions: allow %d (want 1), url %d (want 2), cache hits %d (want 1)", st.Allow.Admitted, st.URL.Admitted, st.CacheHits)
	}
	if st.Refused != 2 || s.Stats().Rejected.Load() != 2 {
		t.Errorf("refused %d by the verifier, %d by the server; want 2 each", st.Refused, s.Stats().Rejected.Load())
	}
}

// TestDERPNoChecks: with nothing configured on a loopback listener everyone is admitted,
// and counted as unverified.
func TestDERPNoChecks(t *testing.T) {
	v, err := New(Config{}, testLogger(t), WithListener("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	_, region := startDERP(t, v)
	a, b := derptest.Connect(t, region, key.NewNode()), derptest.Connect(t, region, key.NewNode())
	a.Send(b.Pub(), []byte("open relay"))
	b.ExpectPacket(a.Pub(), []byte("open relay"))
	if st := v.Stats(); st.Unverified != 2 || st.Admitted != 2 {
		t.Errorf("stats %+v", st)
	}
}
