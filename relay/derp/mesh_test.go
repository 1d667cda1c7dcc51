package derp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// testCert is a self-signed certificate for 127.0.0.1, shared by the test relays; the mesh
// clients trust it through a root pool.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mesh test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,
		// BasicConstraintsValid makes it usable as its own root.
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
})

// meshTLS verifies the test relays with the test certificate as the only root.
func meshTLS(t testing.TB) *tls.Config {
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{RootCAs: pool}
}

// logSink writes slog output to t.Log until the test ends (goroutines may log later).
type logSink struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logSink) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &logSink{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testNode is one relay of the test region, served over TLS on loopback.
type testNode struct {
	name   string
	priv   PrivateKey
	srv    *Server
	hs     *httptest.Server
	addr   string
	url    string
	region *tailcfg.DERPRegion
	once   sync.Once
}

func testMeshKey(b byte) MeshKey {
	var k MeshKey
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// startNode serves a DERP server with priv and mk on addr ("" for any free port).
func startNode(t *testing.T, name string, priv PrivateKey, mk MeshKey, addr string) *testNode {
	t.Helper()
	s, err := NewServer(priv, Options{MeshKey: mk, Logger: testLogger(t).With("node", name)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s again: %v", addr, err)
		}
		hs.Listener.Close()
		hs.Listener = ln
	}
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{*s.WithMetaCert(&cert)}}
	hs.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	hs.StartTLS()
	ap := netip.MustParseAddrPort(hs.Listener.Addr().String())
	n := &testNode{
		name: name, priv: priv, srv: s, hs: hs, addr: ap.String(),
		url: "https://" + ap.String() + "/derp",
		region: &tailcfg.DERPRegion{RegionID: 900, RegionCode: "mesh", Nodes: []*tailcfg.DERPNode{{
			Name: "900" + name, RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			DERPPort: int(ap.Port()), STUNPort: -1, InsecureForTests: true,
		}}},
	}
	t.Cleanup(n.kill)
	return n
}

// kill stops the node as a crash would: no new connections, every connection closed.
func (n *testNode) kill() {
	n.once.Do(func() {
		n.hs.Close()
		n.srv.Close()
	})
}

// meshWith runs from's mesh client to to's URL until the test ends or stop is called.
func meshWith(t *testing.T, from *Server, url string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- from.RunMeshClient(ctx, url, meshTLS(t)) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("mesh client: %v", err)
		}
	})
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, derptest.Timeout, what, cond)
}

func ourKey(k key.NodePublic) Key {
	var o Key
	copy(o[:], k.AppendTo(nil))
	return o
}

// knows reports whether s reaches k through the mesh.
func knows(s *Server, k key.NodePublic) bool { return s.meshForwarder(ourKey(k)) != nil }

// sendUntilReceived resends data from → to until it arrives (a link may still be
// reconnecting) and returns how long that took.
func sendUntilReceived(t *testing.T, from, to *derptest.Peer, data []byte) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	from.Send(to.Pub(), data)
	for {
		select {
		case m, ok := <-to.Msgs:
			if !ok {
				t.Fatal("receiver's connection closed")
			}
			if rp, ok := m.(tsderp.ReceivedPacket); ok && rp.Source == from.Pub() && bytes.Equal(rp.Data, data) {
				return time.Since(start)
			}
		case <-tick.C:
			if time.Since(start) > derptest.Timeout {
				t.Fatalf("packet did not arrive within %v", derptest.Timeout)
			}
			from.Send(to.Pub(), data)
		}
	}
}

func newPriv(t testing.TB) PrivateKey {
	k, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// meshPair starts two relays meshed both ways with the same key.
func meshPair(t *testing.T) (a, b *testNode) {
	mk := testMeshKey(1)
	a = startNode(t, "a", newPriv(t), mk, "")
	b = startNode(t, "b", newPriv(t), mk, "")
	meshWith(t, a.srv, b.url)
	meshWith(t, b.srv, a.url)
	waitFor(t, "both links to watch", func() bool {
		return a.srv.stats.Watchers.Load() == 1 && b.srv.stats.Watchers.Load() == 1
	})
	return a, b
}

func TestMeshRelaysBetweenNodes(t *testing.T) {
	a, b := meshPair(t)
	ca := derptest.Connect(t, a.region, key.NewNode())
	cb := derptest.Connect(t, b.region, key.NewNode())
	waitFor(t, "each node to learn the other's client", func() bool {
		return knows(a.srv, cb.Pub()) && knows(b.srv, ca.Pub())
	})
	if st := a.srv.MeshPeers(); len(st) != 1 || st[0].State != "connected" || st[0].ServerKey != b.srv.pub.String() {
		t.Fatalf("A's mesh status %+v", st)
	}
	// Both know where the other is, for admission control's way in; nobody else is a peer.
	loopback := netip.MustParseAddr("127.0.0.1")
	if !a.srv.IsMeshPeerAddr(loopback) || !b.srv.IsMeshPeerAddr(netip.MustParseAddr("::ffff:127.0.0.1")) ||
		a.srv.IsMeshPeerAddr(netip.MustParseAddr("127.0.0.2")) {
		t.Fatal("mesh peer addresses not learned from the links")
	}

	for i, n := range []int{1, 1200, 2049, 65536} {
		pa, pb := derptest.Pattern(n, byte(i)), derptest.Pattern(n, byte(i+50))
		ca.Send(cb.Pub(), pa)
		cb.ExpectPacket(ca.Pub(), pa)
		cb.Send(ca.Pub(), pb)
		ca.ExpectPacket(cb.Pub(), pb)
	}
	// A burst (within a client queue) keeps its order across the link.
	for i := range 30 {
		ca.Send(cb.Pub(), derptest.Pattern(1200, byte(i)))
	}
	for i := range 30 {
		cb.ExpectPacket(ca.Pub(), derptest.Pattern(1200, byte(i)))
	}
	if got := a.srv.stats.PacketsForwardedOut.Load(); got != 34 {
		t.Errorf("A forwarded %d packets, want 34", got)
	}
	if got := b.srv.stats.PacketsForwardedIn.Load(); got != 34 {
		t.Errorf("B received %d forwarded packets, want 34", got)
	}
	if got := a.srv.MeshPeers()[0].Forwarded; got != 34 {
		t.Errorf("A's link status counts %d forwarded, want 34", got)
	}

	// The remote client leaves: the local one that heard from it gets PeerGone, and the
	// key is no longer forwarded.
	cb.Client.Close()
	ca.ExpectPeerGone(cb.Pub(), tsderp.PeerGoneReasonDisconnected)
	if knows(a.srv, cb.Pub()) {
		t.Fatal("A still forwards to a client that left B")
	}
	// A disco packet to it now gets NotHere from A itself, and nothing is forwarded.
	before := a.srv.stats.PacketsForwardedOut.Load()
	ca.Send(cb.Pub(), derptest.DiscoPacket())
	ca.ExpectPeerGone(cb.Pub(), tsderp.PeerGoneReasonNotHere)
	if a.srv.stats.PacketsForwardedOut.Load() != before {
		t.Fatal("a packet to a departed key was forwarded")
	}
	if a.srv.stats.PacketsDropped[dropUnknownDest].Load() != 1 {
		t.Fatal("the packet to the departed key was not counted as unknown_dest")
	}
}

// TestMeshClientOnTwoRelays: a key connected to two peers is reached through the one that
// announced it first; when it leaves that one, traffic moves to the other and the sender
// hears nothing about it going away, because it never left the region.
func TestMeshClientOnTwoRelays(t *testing.T) {
	mk := testMeshKey(1)
	a := startNode(t, "a", newPriv(t), mk, "")
	b := startNode(t, "b", newPriv(t), mk, "")
	c := startNode(t, "c", newPriv(t), mk, "")
	meshWith(t, a.srv, b.url)
	meshWith(t, a.srv, c.url)
	meshWith(t, b.srv, a.url)
	meshWith(t, c.srv, a.url)
	keysVia := func(n *testNode) int {
		for _, st := range a.srv.MeshPeers() {
			if st.URL == n.url {
				return st.Keys
			}
		}
		return -1
	}
	ca := derptest.Connect(t, a.region, key.NewNode())
	xk := key.NewNode()
	xb := derptest.Connect(t, b.region, xk)
	waitFor(t, "A to learn x on B", func() bool { return keysVia(b) == 1 })
	xc := derptest.Connect(t, c.region, xk)
	waitFor(t, "A to learn x on C", func() bool { return keysVia(c) == 1 })
	// x answers through B and later C: both must have learned ca from A first, or the
	// answer is dropped as unknown_dest.
	waitFor(t, "B and C to learn A's client", func() bool {
		return knows(b.srv, ca.Pub()) && knows(c.srv, ca.Pub())
	})

	for range 3 {
		ca.Send(xk.Public(), []byte("to the first announcer"))
		xb.ExpectPacket(ca.Pub(), []byte("to the first announcer"))
	}
	xb.Send(ca.Pub(), []byte("from x on B"))
	ca.ExpectPacket(xk.Public(), []byte("from x on B"))

	xb.Client.Close()
	waitFor(t, "A to withdraw B's forwarder", func() bool { return keysVia(b) == 0 })
	ca.Send(xk.Public(), []byte("now through C"))
	xc.ExpectPacket(ca.Pub(), []byte("now through C"))
	if got := c.srv.stats.PacketsForwardedIn.Load(); got != 1 {
		t.Fatalf("C got %d forwarded packets, want 1", got)
	}
	// Nothing but the next packet reaches ca: no PeerGone for a key still in the region.
	xc.Send(ca.Pub(), []byte("from x on C"))
	ca.ExpectPacket(xk.Public(), []byte("from x on C"))
}

func TestMeshNeverReforwards(t *testing.T) {
	a, b := meshPair(t)
	ya := derptest.Connect(t, a.region, key.NewNode())
	xb := derptest.Connect(t, b.region, key.NewNode())
	waitFor(t, "B to learn A's client", func() bool { return knows(b.srv, ya.Pub()) })

	// A mesh peer (Tailscale's own client holding the mesh key) hands B a packet for a key
	// B only knows through the mesh. B must drop it, not send it on to A.
	mk := testMeshKey(1)
	tsMesh, err := key.ParseDERPMesh(mk.String())
	if err != nil {
		t.Fatal(err)
	}
	m := derptest.Connect(t, b.region, key.NewNode(), func(c *derphttp.Client) { c.MeshKey = tsMesh })
	src := key.NewNode().Public()
	fwdOut := b.srv.stats.PacketsForwardedOut.Load()
	if err := m.Client.ForwardPacket(src, ya.Pub(), []byte("must not travel on")); err != nil {
		t.Fatal(err)
	}
	// Disco gets a NotHere back on the mesh connection (that is how a stale forwarder on
	// the sending relay is withdrawn).
	if err := m.Client.ForwardPacket(src, ya.Pub(), derptest.DiscoPacket()); err != nil {
		t.Fatal(err)
	}
	m.ExpectPeerGone(ya.Pub(), tsderp.PeerGoneReasonNotHere)
	if got := b.srv.stats.PacketsDropped[dropUnknownDestOnFwd].Load(); got != 2 {
		t.Fatalf("B counted %d unknown_dest_on_fwd drops, want 2", got)
	}
	if b.srv.stats.PacketsForwardedOut.Load() != fwdOut {
		t.Fatal("B re-forwarded a forwarded packet")
	}
	// The first packet ya receives is an ordinary one sent after the bad ones.
	xb.Send(ya.Pub(), []byte("marker"))
	ya.ExpectPacket(xb.Pub(), []byte("marker"))
}

func TestMeshPeerRestart(t *testing.T) {
	mk := testMeshKey(1)
	a := startNode(t, "a", newPriv(t), mk, "")
	bPriv := newPriv(t)
	b := startNode(t, "b", bPriv, mk, "")
	meshWith(t, a.srv, b.url)
	stopB := meshWith(t, b.srv, a.url)

	ca := derptest.Connect(t, a.region, key.NewNode())
	bk := key.NewNode()
	cb := derptest.Connect(t, b.region, bk)
	sendUntilReceived(t, ca, cb, []byte("before"))
	sendUntilReceived(t, cb, ca, []byte("before, back"))

	// B dies (its mesh client with it) and comes back on the same port with the same key.
	killed := time.Now()
	b.kill()
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	ca.ExpectPeerGone(bk.Public(), tsderp.PeerGoneReasonDisconnected)
	waitFor(t, "A's link to notice", func() bool { return a.srv.MeshPeers()[0].State != "connected" })

	b2 := startNode(t, "b2", bPriv, mk, b.addr)
	meshWith(t, b2.srv, a.url)
	cb2 := derptest.Connect(t, b2.region, bk)
	d1 := sendUntilReceived(t, ca, cb2, []byte("after restart"))
	d2 := sendUntilReceived(t, cb2, ca, []byte("after restart, back"))
	t.Logf("traffic resumed %v after the kill (A→B waited %v, B→A %v); A's link: %+v",
		time.Since(killed).Round(time.Millisecond), d1.Round(time.Millisecond), d2.Round(time.Millisecond),
		a.srv.MeshPeers()[0])
	if st := a.srv.MeshPeers()[0]; st.Connects < 2 {
		t.Fatalf("A's link connected %d times, want a reconnect", st.Connects)
	}
}

// stuckPeer is a hostile mesh peer: it completes the handshake, announces one key, and then
// never reads again.
func stuckPeer(t *testing.T, announce Key) (url string) {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(quit); ln.Close(); <-done })
	priv := newPriv(t)
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br, bw := bufio.NewReader(nc), bufio.NewWriter(nc)
		if _, err := http.ReadRequest(br); err != nil {
			t.Errorf("stuck peer: %v", err)
			return
		}
		bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
		if err := writeServerKey(bw, priv.Public()); err != nil {
			return
		}
		h, err := readClientInfo(br, priv)
		if err != nil {
			t.Errorf("stuck peer: %v", err)
			return
		}
		writeServerInfo(bw, priv, h.key, serverInfo{Version: ProtocolVersion})
		if typ, _, err := readFrameHeader(br); err != nil || typ != frameWatchConns {
			t.Errorf("stuck peer: frame 0x%02x (%v), want WatchConns", typ, err)
			return
		}
		var pp [peerPresentLen]byte
		copy(pp[:], announce[:])
		writeFrame(bw, framePeerPresent, pp[:])
		bw.Flush()
		<-quit // never read again
	}()
	return "https://" + ln.Addr().String() + "/derp"
}

// TestMeshStuckPeer: a peer that stops reading costs its own link only. Senders are never
// blocked (the link's queue drops), local traffic flows, and the link is dropped when its
// write deadline passes.
func TestMeshStuckPeer(t *testing.T) {
	a := startNode(t, "a", newPriv(t), testMeshKey(1), "")
	x := key.NewNode().Public()
	meshWith(t, a.srv, stuckPeer(t, ourKey(x)))
	waitFor(t, "A to learn the stuck peer's key", func() bool { return knows(a.srv, x) })

	ca := derptest.Connect(t, a.region, key.NewNode())
	ya := derptest.Connect(t, a.region, key.NewNode())
	pkt := derptest.Pattern(1200, 3)
	start := time.Now()
	const n = 20000 // far more than loopback socket buffers and the link queue hold
	for range n {
		ca.Send(x, pkt)
	}
	ca.Send(ya.Pub(), []byte("local traffic flows"))
	ya.ExpectPacket(ca.Pub(), []byte("local traffic flows"))
	t.Logf("%d packets to a stuck peer sent and a local packet delivered in %v", n, time.Since(start).Round(time.Millisecond))

	waitFor(t, "the stuck link to be dropped", func() bool {
		return !knows(a.srv, x) && a.srv.MeshPeers()[0].State != "connected"
	})
	st := a.srv.MeshPeers()[0]
	t.Logf("stuck link after %v: %+v; write timeouts %d", time.Since(start).Round(time.Millisecond), st,
		a.srv.stats.WriteTimeouts.Load())
	if st.Dropped == 0 || a.srv.stats.WriteTimeouts.Load() == 0 || !strings.Contains(st.LastError, "writing to peer") {
		t.Fatalf("no drops or write timeout counted for the stuck link: %+v", st)
	}
	if got := st.Forwarded + st.Dropped; got != n {
		t.Fatalf("link accounted for %d packets (forwarded+dropped), want %d", got, n)
	}
}

func TestMeshSelfConnect(t *testing.T) {
	a := startNode(t, "a", newPriv(t), testMeshKey(1), "")
	ctx, cancel := context.WithTimeout(context.Background(), derptest.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.srv.RunMeshClient(ctx, a.url, meshTLS(t)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("self-connect: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a mesh client dialling its own relay did not stop")
	}
	if a.srv.stats.Watchers.Load() != 0 {
		t.Fatal("the relay watches itself")
	}
	if st := a.srv.MeshPeers(); len(st) != 1 || st[0].State != "self" {
		t.Fatalf("status after self-connect: %+v", st)
	}
	// The relay works as before.
	c1, c2 := derptest.Connect(t, a.region, key.NewNode()), derptest.Connect(t, a.region, key.NewNode())
	c1.Send(c2.Pub(), []byte("still fine"))
	c2.ExpectPacket(c1.Pub(), []byte("still fine"))
	if a.srv.stats.PacketsForwardedOut.Load() != 0 {
		t.Fatal("something was forwarded to ourselves")
	}
}

func TestMeshWrongKey(t *testing.T) {
	b := startNode(t, "b", newPriv(t), testMeshKey(1), "")
	xb := derptest.Connect(t, b.region, key.NewNode())

	// Our own mesh client with another key: B refuses WatchConns and closes; the client
	// never learns B's clients and keeps retrying with growing backoff.
	c := startNode(t, "c", newPriv(t), testMeshKey(2), "")
	meshWith(t, c.srv, b.url)
	waitFor(t, "the refused link to retry", func() bool {
		st := c.srv.MeshPeers()
		return len(st) == 1 && st[0].Connects >= 2 && strings.Contains(st[0].LastError, "before its first PeerPresent")
	})
	if b.srv.stats.Watchers.Load() != 0 || knows(c.srv, xb.Pub()) {
		t.Fatal("a relay with the wrong mesh key watches B")
	}

	// Tailscale's client with the wrong key: each mesh-only frame closes the connection.
	wrong, _ := key.ParseDERPMesh(testMeshKey(2).String())
	type attempt struct {
		tune func(*derphttp.Client)
		do   func(*derphttp.Client) error
	}
	for name, a := range map[string]attempt{
		"ForwardPacket": {do: func(cl *derphttp.Client) error {
			return cl.ForwardPacket(key.NewNode().Public(), xb.Pub(), []byte("smuggled"))
		}},
		"WatchConns": {tune: func(cl *derphttp.Client) { cl.WatchConnectionChanges = true }},
		"ClosePeer":  {do: func(cl *derphttp.Client) error { return cl.ClosePeer(xb.Pub()) }},
	} {
		t.Run(name, func(t *testing.T) {
			p := derptest.Connect(t, b.region, key.NewNode(), func(cl *derphttp.Client) {
				cl.MeshKey = wrong
				if a.tune != nil {
					a.tune(cl)
				}
			})
			if a.do != nil {
				if err := a.do(p.Client); err != nil {
					t.Fatal(err)
				}
			}
			timer := time.NewTimer(derptest.Timeout)
			defer timer.Stop()
			for {
				select {
				case _, ok := <-p.Msgs:
					if !ok {
						return // closed, as it must be
					}
				case <-timer.C:
					t.Fatalf("%s with the wrong mesh key did not close the connection", name)
				}
			}
		})
	}
	// xb was neither closed nor sent the smuggled packet.
	y := derptest.Connect(t, b.region, key.NewNode())
	y.Send(xb.Pub(), []byte("marker"))
	xb.ExpectPacket(y.Pub(), []byte("marker"))
}

// TestTailscaleMeshWatcher runs Tailscale's own mesh client code (what derper runs for
// --mesh-with) against our server.
func TestTailscaleMeshWatcher(t *testing.T) {
	mk := testMeshKey(1)
	b := startNode(t, "b", newPriv(t), mk, "")
	tsMesh, _ := key.ParseDERPMesh(mk.String())
	wc := derphttp.NewRegionClient(key.NewNode(), t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return b.region })
	wc.MeshKey = tsMesh
	wc.WatchConnectionChanges = true
	events := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		wc.RunWatchConnectionLoop(ctx, key.NodePublic{}, t.Logf,
			func(m tsderp.PeerPresentMessage) { events <- "present " + m.Key.String() },
			func(m tsderp.PeerGoneMessage) { events <- "gone " + m.Peer.String() }, nil)
	}()
	t.Cleanup(func() { cancel(); wc.Close(); <-done })
	expect := func(want string) {
		t.Helper()
		timer := time.NewTimer(derptest.Timeout)
		defer timer.Stop()
		for {
			select {
			case e := <-events:
				if e == want {
					return
				}
			case <-timer.C:
				t.Fatalf("watcher never saw %q", want)
			}
		}
	}
	x := derptest.Connect(t, b.region, key.NewNode())
	expect("present " + x.Pub().String())

	// derper forwards with the same client: ForwardPacket reaches our local client.
	src := key.NewNode().Public()
	if err := wc.ForwardPacket(src, x.Pub(), []byte("via the reference mesh client")); err != nil {
		t.Fatal(err)
	}
	x.ExpectPacket(src, []byte("via the reference mesh client"))

	x.Client.Close()
	expect("gone " + x.Pub().String())
}

// TestMeshWithReferenceDerper meshes our relay with Tailscale's own derpserver (wired as
// cmd/derper wires --mesh-with) and relays both ways between their clients.
func TestMeshWithReferenceDerper(t *testing.T) {
	mk := testMeshKey(1)
	ours := startNode(t, "ours", newPriv(t), mk, "")

	dpriv := key.NewNode()
	ds := derpserver.New(dpriv, t.Logf)
	if err := ds.SetMeshKey(mk.String()); err != nil {
		t.Fatal(err)
	}
	cert, _ := testCert()
	hs := httptest.NewUnstartedServer(derpserver.Handler(ds))
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	hs.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	hs.StartTLS()
	t.Cleanup(func() { hs.Close(); ds.Close() })
	dport := netip.MustParseAddrPort(hs.Listener.Addr().String()).Port()
	dregion := &tailcfg.DERPRegion{RegionID: 900, RegionCode: "mesh", Nodes: []*tailcfg.DERPNode{{
		Name: "900d", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
		DERPPort: int(dport), STUNPort: -1, InsecureForTests: true,
	}}}

	// derper's side: its server key, the mesh key, a watch loop feeding its forwarders.
	var dpk PrivateKey
	if err := dpk.UnmarshalText(must(dpriv.MarshalText())); err != nil {
		t.Fatal(err)
	}
	mc := derphttp.NewRegionClient(dpriv, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return ours.region })
	tsMesh, _ := key.ParseDERPMesh(mk.String())
	mc.MeshKey = tsMesh
	mc.WatchConnectionChanges = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		mc.RunWatchConnectionLoop(ctx, ds.PublicKey(), t.Logf,
			func(m tsderp.PeerPresentMessage) { ds.AddPacketForwarder(m.Key, mc) },
			func(m tsderp.PeerGoneMessage) { ds.RemovePacketForwarder(m.Peer, mc) }, nil)
	}()
	t.Cleanup(func() { cancel(); mc.Close(); <-done })
	// Our side.
	meshWith(t, ours.srv, "https://"+hs.Listener.Addr().String()+"/derp")

	co := derptest.Connect(t, ours.region, key.NewNode())
	cd := derptest.Connect(t, dregion, key.NewNode())
	waitFor(t, "our relay to learn derper's client", func() bool { return knows(ours.srv, cd.Pub()) })
	if st := ours.srv.MeshPeers()[0]; st.ServerKey != ourKey(ds.PublicKey()).String() {
		t.Fatalf("our link reports server key %s", st.ServerKey)
	}
	sendUntilReceived(t, co, cd, []byte("ours → derper"))
	sendUntilReceived(t, cd, co, []byte("derper → ours"))
	cd.Client.Close()
	waitFor(t, "derper's client to be withdrawn", func() bool { return !knows(ours.srv, cd.Pub()) })
	co.ExpectPeerGone(cd.Pub(), tsderp.PeerGoneReasonDisconnected)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fakeFwd records which forwarder got a packet (for the table's ordering rules).
type fakeFwd struct {
	name string
	got  *[]string
}

func (f *fakeFwd) forward(_ Key, p packet) {
	*f.got = append(*f.got, f.name)
	p.release()
}

func TestForwarderTable(t *testing.T) {
	s := newTestServer(t)
	var got []string
	f1, f2, f3 := &fakeFwd{"1", &got}, &fakeFwd{"2", &got}, &fakeFwd{"3", &got}
	k := Key{1}
	send := func() {
		p := newPacket(10)
		s.deliver(nil, k, p)
	}
	s.addForwarder(k, f1)
	s.addForwarder(k, f2)
	s.addForwarder(k, f1) // duplicate: ignored
	s.addForwarder(k, f3)
	send()
	s.removeForwarder(k, f1) // the earliest leaves: the next earliest takes over
	send()
	s.removeForwarder(k, f3)
	send()
	s.removeForwarder(k, f3) // not registered any more: harmless
	send()
	s.removeForwarder(k, f2)
	send() // nobody: unknown_dest
	if want := "1 2 2 2"; strings.Join(got, " ") != want {
		t.Fatalf("packets went to %q, want %q", strings.Join(got, " "), want)
	}
	if s.stats.PacketsDropped[dropUnknownDest].Load() != 1 || s.loadFwd(k) != nil {
		t.Fatal("the last removal did not clear the key")
	}
}

func TestMeshPeerURL(t *testing.T) {
	for in, want := range map[string]string{
		"derp2.example.com":              "https://derp2.example.com:12345/derp",
		"derp2.example.com:443":          "https://derp2.example.com:443/derp",
		"192.0.2.7":                      "https://192.0.2.7:12345/derp",
		"[2001:db8::7]:8443":             "https://[2001:db8::7]:8443/derp",
		"2001:db8::7":                    "https://[2001:db8::7]:12345/derp",
		"[2001:db8::7]":                  "https://[2001:db8::7]:12345/derp",
		"https://derp2.example.com":      "https://derp2.example.com/derp",
		"https://derp2.example.com:1/x/": "https://derp2.example.com:1/x/",
	} {
		got, err := MeshPeerURL(in, 12345)
		if err != nil || got != want {
			t.Errorf("MeshPeerURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://x", "host:0", "host:99999", "host:abc", "a/b", "https://", "user@host"} {
		if got, err := MeshPeerURL(bad, 12345); err == nil {
			t.Errorf("MeshPeerURL(%q) = %q, want an error", bad, got)
		}
	}
	s := newTestServer(t)
	if err := s.RunMeshClient(context.Background(), "https://x/derp", nil); err == nil {
		t.Error("RunMeshClient without a mesh key did not fail")
	}
}

// FuzzMeshHandshake feeds a peer's answer to the mesh client's handshake: it must fail
// cleanly on anything but a valid upgrade + ServerKey + sealed ServerInfo.
func FuzzMeshHandshake(f *testing.F) {
	ok101 := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n"
	var pk Key
	f.Add([]byte(ok101 + string(frame(frameServerKey, append([]byte(magic), pk[:]...)))))
	f.Add([]byte(ok101 + string(frame(frameServerKey, append([]byte(magic), make([]byte, 40)...))) +
		string(frame(frameServerInfo, make([]byte, 40)))))
	f.Add([]byte("HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte(ok101 + "\x01\xff\xff\xff\xff"))
	s := newTestServer(f)
	s.opts.MeshKey = testMeshKey(1)
	u, _ := url.Parse("https://127.0.0.1:1/derp")
	l := s.newMeshLink(u, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		bw := bufio.NewWriter(io.Discard)
		if _, err := l.handshake(br, bw); err == nil {
			t.Fatal("handshake accepted without a ServerInfo sealed to us")
		}
	})
}

// FuzzMeshFrames feeds a peer's frames to the mesh client's reader: no crash, and every
// key it announced is withdrawn when the link ends.
func FuzzMeshFrames(f *testing.F) {
	k := Key{7}
	f.Add(frame(framePeerPresent, append(k[:], make([]byte, 19)...)))
	f.Add(append(frame(framePeerPresent, k[:]), frame(framePeerGone, append(k[:], 0))...))
	f.Add(frame(framePing, []byte("12345678")))
	f.Add(frame(frameHealth, []byte("trouble")))
	f.Add(frame(frameKeepAlive, nil))
	f.Add(frame(frameRecvPacket, make([]byte, 40)))
	f.Add([]byte{framePeerGone, 0, 0, 0, 5, 1})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0xff})
	s := newTestServer(f)
	s.opts.MeshKey = testMeshKey(1)
	u, _ := url.Parse("https://127.0.0.1:1/derp")
	f.Fuzz(func(t *testing.T, in []byte) {
		l := s.newMeshLink(u, nil)
		c := &meshConn{l: l, pongs: make(chan [8]byte, 1)}
		err := c.readFrames(bufio.NewReader(bytes.NewReader(in)))
		if err == nil {
			t.Fatal("reader ended without an error")
		}
		l.removeAll()
		n := 0
		s.mesh.fwd.Range(func(any, any) bool { n++; return true })
		if n != 0 {
			t.Fatalf("%d forwarders left after the link ended", n)
		}
	})
}

// BenchmarkMeshRelay measures 1,200-byte packets from a Tailscale client on one relay to
// one on the other, through the mesh link, and for comparison within one relay.
func BenchmarkMeshRelay(b *testing.B) {
	for _, viaMesh := range []bool{false, true} {
		name := "local"
		if viaMesh {
			name = "mesh"
		}
		b.Run(name, func(b *testing.B) { benchRelay(b, viaMesh) })
	}
}

func benchRelay(b *testing.B, viaMesh bool) {
	mk := testMeshKey(1)
	s1, err := NewServer(newPriv(b), Options{MeshKey: mk})
	if err != nil {
		b.Fatal(err)
	}
	n1 := serveBench(b, s1)
	n2 := n1
	if viaMesh {
		s2, err := NewServer(newPriv(b), Options{MeshKey: mk})
		if err != nil {
			b.Fatal(err)
		}
		n2 = serveBench(b, s2)
		for _, p := range [][2]*benchNode{{n1, n2}, {n2, n1}} {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); p[0].srv.RunMeshClient(ctx, p[1].url, meshTLS(b)) }()
			b.Cleanup(func() { cancel(); <-done })
		}
	}
	src := derptest.Connect(b, n1.region, key.NewNode())
	dst := derptest.Connect(b, n2.region, key.NewNode())
	if viaMesh {
		deadline := time.Now().Add(derptest.Timeout)
		for !knows(n1.srv, dst.Pub()) {
			if time.Now().After(deadline) {
				b.Fatal("mesh did not come up")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A window smaller than a client queue: nothing is dropped, so the figure is what the
	// path carries, not how fast queues overflow.
	const window = 16
	pkt := derptest.Pattern(1200, 1)
	dk := dst.Pub() // derived from the private key on every call
	sem := make(chan struct{}, window)
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			sem <- struct{}{}
			if err := src.Client.Send(dk, pkt); err != nil {
				return
			}
		}
	}()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for got := 0; got < b.N; {
		select {
		case m := <-dst.Msgs:
			if _, ok := m.(tsderp.ReceivedPacket); ok {
				got++
				<-sem
			}
		case <-timeout.C:
			b.Fatalf("received %d of %d", got, b.N)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkts/s")
}

type benchNode struct {
	srv    *Server
	url    string
	region *tailcfg.DERPRegion
}

func serveBench(b *testing.B, s *Server) *benchNode {
	cert, err := testCert()
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{*s.WithMetaCert(&cert)}}
	hs.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	hs.StartTLS()
	b.Cleanup(func() { hs.Close(); s.Close() })
	ap := netip.MustParseAddrPort(hs.Listener.Addr().String())
	return &benchNode{srv: s, url: "https://" + ap.String() + "/derp", region: &tailcfg.DERPRegion{
		RegionID: 900, RegionCode: "bench", Nodes: []*tailcfg.DERPNode{{
			Name: "900b", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			DERPPort: int(ap.Port()), STUNPort: -1, InsecureForTests: true,
		}},
	}}
}
