// Package derptest is a test-only suite that drives a DERP server with Tailscale's own
// client code (tailscale.com/derp/derphttp). It is imported only by _test.go files, so
// tailscale.com never reaches the shipped binary; the same suite runs against the in-process
// relay and against the built binary.
package derptest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/relay/pin"
)

// Timeout bounds every wait in the suite.
const Timeout = 10 * time.Second

// Peer is a connected Tailscale DERP client with a receive loop feeding Msgs.
type Peer struct {
	Key    key.NodePrivate
	Client *derphttp.Client
	Msgs   chan derp.ReceivedMessage
	t      testing.TB
}

// Connect dials region with Tailscale's region client (as tailscaled does) and waits for
// ServerInfo, which must be the first message.
func Connect(t testing.TB, region *tailcfg.DERPRegion, priv key.NodePrivate, tune ...func(*derphttp.Client)) *Peer {
	t.Helper()
	c := derphttp.NewRegionClient(priv, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	c.SetCanAckPings(true)
	for _, f := range tune {
		f(c)
	}
	return start(t, priv, c)
}

// Refused reports whether the server closes a connection from priv before sending
// ServerInfo (the client's first Recv fails), as client verification does with a client it
// does not admit. It fails the test when the server neither refuses nor admits in time.
func Refused(t testing.TB, region *tailcfg.DERPRegion, priv key.NodePrivate, tune ...func(*derphttp.Client)) bool {
	t.Helper()
	c := derphttp.NewRegionClient(priv, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	defer c.Close()
	for _, f := range tune {
		f(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	start := time.Now()
	if err := c.Connect(ctx); err != nil {
		t.Logf("connect failed: %v", err) // refused during setup
		return true
	}
	type result struct {
		m   derp.ReceivedMessage
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := c.Recv()
		done <- result{m, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Logf("first Recv: %v (after %v)", r.err, time.Since(start).Round(time.Millisecond))
			return true
		}
		if _, ok := r.m.(derp.ServerInfoMessage); !ok {
			t.Fatalf("first message %T, want ServerInfo or the connection closed", r.m)
		}
		return false
	case <-time.After(Timeout):
		t.Fatal("Recv neither failed nor returned within the timeout")
		return false
	}
}

func start(t testing.TB, priv key.NodePrivate, c *derphttp.Client) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	p := &Peer{Key: priv, Client: c, Msgs: make(chan derp.ReceivedMessage, 256), t: t}
	t.Cleanup(func() { c.Close() })
	go func() {
		defer close(p.Msgs)
		for {
			m, err := c.Recv()
			if err != nil {
				return
			}
			if rp, ok := m.(derp.ReceivedPacket); ok {
				rp.Data = bytes.Clone(rp.Data) // Recv reuses its buffer
				m = rp
			}
			p.Msgs <- m
		}
	}()
	if _, ok := p.Next().(derp.ServerInfoMessage); !ok {
		t.Fatalf("first message is not ServerInfo")
	}
	return p
}

// Pub is the peer's node key.
func (p *Peer) Pub() key.NodePublic { return p.Key.Public() }

// Next returns the next message other than keepalives and pongs (failing on timeout).
func (p *Peer) Next() derp.ReceivedMessage {
	p.t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.Msgs:
			if !ok {
				p.t.Fatalf("connection closed while waiting for a message")
			}
			switch m.(type) {
			case derp.KeepAliveMessage, derp.PongMessage:
				continue
			}
			return m
		case <-timer.C:
			p.t.Fatalf("no message within %v", Timeout)
			return nil
		}
	}
}

// ExpectPacket waits for a packet from src with exactly data.
func (p *Peer) ExpectPacket(src key.NodePublic, data []byte) {
	p.t.Helper()
	m := p.Next()
	rp, ok := m.(derp.ReceivedPacket)
	if !ok {
		p.t.Fatalf("got %T, want a packet", m)
	}
	if rp.Source != src {
		p.t.Fatalf("packet from %v, want %v", rp.Source.ShortString(), src.ShortString())
	}
	if !bytes.Equal(rp.Data, data) {
		p.t.Fatalf("packet of %d bytes differs from the %d sent", len(rp.Data), len(data))
	}
}

// ExpectPeerGone waits for PeerGone about peer with reason.
func (p *Peer) ExpectPeerGone(peer key.NodePublic, reason derp.PeerGoneReasonType) {
	p.t.Helper()
	m := p.Next()
	pg, ok := m.(derp.PeerGoneMessage)
	if !ok {
		p.t.Fatalf("got %T, want PeerGone", m)
	}
	if pg.Peer != peer || pg.Reason != reason {
		p.t.Fatalf("PeerGone(%v, %d), want (%v, %d)", pg.Peer.ShortString(), pg.Reason, peer.ShortString(), reason)
	}
}

// Send sends data to dst, failing the test on error.
func (p *Peer) Send(dst key.NodePublic, data []byte) {
	p.t.Helper()
	if err := p.Client.Send(dst, data); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// Pattern returns n bytes that differ per size and seed, so mixed-up packets are caught.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// DiscoPacket looks like a Tailscale disco packet (magic + key + nonce + box).
func DiscoPacket() []byte {
	b := append([]byte("TS💬"), make([]byte, 32+24+16)...)
	return b
}

// Run runs the protocol suite against region: everything a real client relies on.
func Run(t *testing.T, region *tailcfg.DERPRegion) {
	t.Run("packets", func(t *testing.T) {
		a, b := Connect(t, region, key.NewNode()), Connect(t, region, key.NewNode())
		for i, n := range []int{1, 2, 100, 1200, 1280, 1500, 2048, 2049, 4096, 16384, 65535, 65536} {
			pa, pb := Pattern(n, byte(i)), Pattern(n, byte(i+100))
			a.Send(b.Pub(), pa)
			b.ExpectPacket(a.Pub(), pa)
			b.Send(a.Pub(), pb)
			a.ExpectPacket(b.Pub(), pb)
		}
	})
	t.Run("burst", func(t *testing.T) {
		// Fewer packets than the queue holds, sent back to back: all arrive, in order.
		a, b := Connect(t, region, key.NewNode()), Connect(t, region, key.NewNode())
		for i := range 30 {
			a.Send(b.Pub(), Pattern(1200, byte(i)))
		}
		for i := range 30 {
			b.ExpectPacket(a.Pub(), Pattern(1200, byte(i)))
		}
	})
	t.Run("ping", func(t *testing.T) {
		a := Connect(t, region, key.NewNode())
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			err := a.Client.Ping(ctx)
			cancel()
			if err != nil {
				t.Fatalf("ping: %v", err)
			}
		}
	})
	t.Run("peer gone", func(t *testing.T) {
		a, b := Connect(t, region, key.NewNode()), Connect(t, region, key.NewNode())
		a.Send(b.Pub(), []byte("hello"))
		b.ExpectPacket(a.Pub(), []byte("hello"))
		a.Client.Close()
		b.ExpectPeerGone(a.Pub(), derp.PeerGoneReasonDisconnected)
	})
	t.Run("peer gone after a return", func(t *testing.T) {
		// A source that left and came back is announced again when it leaves again.
		b := Connect(t, region, key.NewNode())
		ak := key.NewNode()
		for i := range 2 {
			a := Connect(t, region, ak)
			a.Send(b.Pub(), []byte{byte(i)})
			b.ExpectPacket(ak.Public(), []byte{byte(i)})
			a.Client.Close()
			b.ExpectPeerGone(ak.Public(), derp.PeerGoneReasonDisconnected)
		}
	})
	t.Run("not here", func(t *testing.T) {
		a := Connect(t, region, key.NewNode())
		nobody := key.NewNode().Public()
		a.Send(nobody, DiscoPacket())
		a.ExpectPeerGone(nobody, derp.PeerGoneReasonNotHere)
	})
	t.Run("reconnect same key", func(t *testing.T) {
		a := Connect(t, region, key.NewNode())
		bk := key.NewNode()
		b := Connect(t, region, bk)
		b.Client.Close()
		b2 := Connect(t, region, bk)
		a.Send(bk.Public(), []byte("after reconnect"))
		b2.ExpectPacket(a.Pub(), []byte("after reconnect"))
	})
	t.Run("duplicate keys: last writer is active", func(t *testing.T) {
		a := Connect(t, region, key.NewNode())
		bk := key.NewNode()
		b1 := Connect(t, region, bk)
		b2 := Connect(t, region, bk)
		a.Send(bk.Public(), []byte("to newest"))
		b2.ExpectPacket(a.Pub(), []byte("to newest"))
		// b1 speaks, so it becomes the active connection again.
		b1.Send(a.Pub(), []byte("b1 here"))
		a.ExpectPacket(bk.Public(), []byte("b1 here"))
		a.Send(bk.Public(), []byte("to b1"))
		b1.ExpectPacket(a.Pub(), []byte("to b1"))
	})
	t.Run("no fast start (TLS 1.2)", func(t *testing.T) {
		tls12 := func(c *derphttp.Client) {
			c.TLSConfig = &tls.Config{MaxVersion: tls.VersionTLS12}
		}
		a := Connect(t, region, key.NewNode(), tls12)
		b := Connect(t, region, key.NewNode())
		if st, ok := a.Client.TLSConnectionState(); !ok || st.Version != tls.VersionTLS12 {
			t.Fatalf("client did not use TLS 1.2")
		}
		a.Send(b.Pub(), []byte("classic upgrade"))
		b.ExpectPacket(a.Pub(), []byte("classic upgrade"))
	})
	t.Run("websocket", func(t *testing.T) {
		b := Connect(t, region, key.NewNode())
		priv := key.NewNode()
		dc := DialWebSocket(t, region.Nodes[0], priv)
		if err := dc.Send(b.Pub(), []byte("over websocket")); err != nil {
			t.Fatal(err)
		}
		b.ExpectPacket(priv.Public(), []byte("over websocket"))
		b.Send(priv.Public(), Pattern(3000, 9))
		for {
			m, err := dc.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if rp, ok := m.(derp.ReceivedPacket); ok {
				if !bytes.Equal(rp.Data, Pattern(3000, 9)) {
					t.Fatal("websocket packet differs")
				}
				break
			}
		}
	})
}

// TLSConfig trusts node the way Tailscale clients do: by its CertName sha256-raw pin, or
// (when there is none) by roots.
func TLSConfig(node *tailcfg.DERPNode, roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{ServerName: node.HostName, RootCAs: roots}
	if strings.HasPrefix(node.CertName, "sha256-raw:") {
		pin.Trust(cfg, node.CertName)
	}
	return cfg
}

// DialWebSocket connects with a real WebSocket client (subprotocol "derp", binary messages)
// and runs Tailscale's DERP client over it.
func DialWebSocket(t testing.TB, node *tailcfg.DERPNode, priv key.NodePrivate) *derp.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	host := node.HostName
	if node.IPv4 != "" {
		host = node.IPv4
	}
	u := "wss://" + net.JoinHostPort(host, strconv.Itoa(node.DERPPort)) + "/derp"
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		Subprotocols: []string{"derp"},
		HTTPClient:   HTTPClient(node),
	})
	if err != nil {
		t.Fatalf("websocket dial %s: %v", u, err)
	}
	if ws.Subprotocol() != "derp" {
		t.Fatalf("negotiated subprotocol %q, want derp", ws.Subprotocol())
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	brw := bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))
	dc, err := derp.NewClient(priv, nc, brw, t.Logf, derp.CanAckPings(true))
	if err != nil {
		t.Fatalf("derp over websocket: %v", err)
	}
	m, err := dc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first websocket message %T, want ServerInfo", m)
	}
	return dc
}

// HTTPClient is an HTTPS client trusting node by its pin, HTTP/1.1 only.
func HTTPClient(node *tailcfg.DERPNode) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: TLSConfig(node, nil),
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
}

// URL is the node's https base URL.
func URL(node *tailcfg.DERPNode) string {
	host := node.HostName
	if node.IPv4 != "" {
		host = node.IPv4
	}
	return fmt.Sprintf("https://%s", net.JoinHostPort(host, strconv.Itoa(node.DERPPort)))
}

// DialRaw does the HTTP upgrade by hand over TLS and runs Tailscale's DERP client on the
// connection, without derphttp's reconnect logic: for tests that need the socket itself.
// The caller reads ServerInfo (or not).
func DialRaw(t testing.TB, node *tailcfg.DERPNode, priv key.NodePrivate, dialer *net.Dialer, opts ...derp.ClientOpt) (*derp.Client, *tls.Conn) {
	t.Helper()
	dc, conn, err := Dial(node, priv, dialer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return dc, conn
}

// Dial is DialRaw for callers that expect failures (attack tests): the error is returned,
// and the caller closes the connection.
func Dial(node *tailcfg.DERPNode, priv key.NodePrivate, dialer *net.Dialer, opts ...derp.ClientOpt) (*derp.Client, *tls.Conn, error) {
	if dialer == nil {
		dialer = &net.Dialer{Timeout: Timeout}
	}
	addr := strings.TrimPrefix(URL(node), "https://")
	conn, err := tls.DialWithDialer(dialer, "tcp", addr, TLSConfig(node, nil))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	conn.SetDeadline(time.Now().Add(Timeout))
	fmt.Fprintf(conn, "GET /derp HTTP/1.1\r\nHost: %s\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n", node.HostName)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: status %d", resp.StatusCode)
	}
	opts = append([]derp.ClientOpt{derp.CanAckPings(true)}, opts...)
	dc, err := derp.NewClient(priv, conn, bufio.NewReadWriter(br, bufio.NewWriter(conn)), func(string, ...any) {}, opts...)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("derp handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return dc, conn, nil
}
