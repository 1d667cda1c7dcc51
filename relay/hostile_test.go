package relay_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, what, cond)
}

// closedWithin reports whether the server closes conn (read hits EOF or reset) in 20 s.
func closedWithin(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	ne, isNet := err.(net.Error)
	return err == nil || !(isNet && ne.Timeout())
}

func TestSlowlorisUpgrade(t *testing.T) {
	_, region := startRelay(t, selfSignedYAML+"  handshake_timeout: 1s\n")
	node := region.Nodes[0]
	conn, err := tls.Dial("tcp", strings.TrimPrefix(derptest.URL(node), "https://"), derptest.TLSConfig(node, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET /derp HTTP/1.1\r\nHost: x\r\nUpgr")) // and then nothing
	if !closedWithin(conn) {
		t.Fatal("a half-sent upgrade kept its connection open")
	}
}

func TestGarbageAfterUpgrade(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	node := region.Nodes[0]
	conn, err := tls.Dial("tcp", strings.TrimPrefix(derptest.URL(node), "https://"), derptest.TLSConfig(node, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
	conn.Write([]byte("\x02\x00\x00\x00\x40this is not a sealed ClientInfo, just 64 bytes of junk.........."))
	br := bufio.NewReader(conn)
	got, _ := io.ReadAll(br)
	if strings.Contains(string(got), "\x03\x00\x00") && r.DERP().Stats().Accepts.Load() > 0 {
		t.Fatal("garbage ClientInfo got a ServerInfo")
	}
	if r.DERP().Stats().HandshakeFailures.Load() == 0 {
		t.Fatal("handshake failure not counted")
	}
}

// Headers are bounded (a pending connection may hold little): 64 KiB of them get 431.
func TestHugeHeaders(t *testing.T) {
	_, region := startRelay(t, selfSignedYAML)
	node := region.Nodes[0]
	conn, err := tls.Dial("tcp", strings.TrimPrefix(derptest.URL(node), "https://"), derptest.TLSConfig(node, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /derp HTTP/1.1\r\nHost: x\r\nX-Junk: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, "431") {
		t.Fatalf("response %q (%v), want 431", line, err)
	}
	derptest.Connect(t, region, key.NewNode())
}

// A client that never reads must be dropped by the write deadline, and must not slow
// anyone else down meanwhile.
func TestClientThatNeverReads(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	node := region.Nodes[0]
	// A small receive buffer so the server's writes block soon.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	lazyKey := key.NewNode()
	_, lazyConn := derptest.DialRaw(t, node, lazyKey, dialer)
	_ = lazyConn // never read from

	flooder := derptest.Connect(t, region, key.NewNode())
	a, b := derptest.Connect(t, region, key.NewNode()), derptest.Connect(t, region, key.NewNode())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pkt := make([]byte, 1200)
		for i := 0; i < 20000 && r.DERP().Stats().WriteTimeouts.Load() == 0; i++ {
			if flooder.Client.Send(lazyKey.Public(), pkt) != nil {
				return
			}
		}
	}()
	// Meanwhile a and b keep talking.
	for i := range 20 {
		a.Send(b.Pub(), []byte(fmt.Sprintf("still here %d", i)))
		b.ExpectPacket(a.Pub(), []byte(fmt.Sprintf("still here %d", i)))
	}
	waitFor(t, "the write deadline to drop the non-reader", func() bool { return r.DERP().Stats().WriteTimeouts.Load() > 0 })
	<-done
	a.Send(b.Pub(), []byte("after"))
	b.ExpectPacket(a.Pub(), []byte("after"))
}

func TestLimits(t *testing.T) {
	t.Run("max_clients", func(t *testing.T) {
		r, region := startRelay(t, selfSignedYAML+"  max_clients: 2\n")
		node := region.Nodes[0]
		derptest.Connect(t, region, key.NewNode())
		derptest.Connect(t, region, key.NewNode())
		// Unauthenticated connections have a pool of their own: max_clients does not count them.
		conn, err := net.Dial("tcp", strings.TrimPrefix(derptest.URL(node), "https://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		waitFor(t, "the raw connection to be pending", func() bool { return r.ListenerStats().Pending.Load() == 1 })
		// A third client is turned away after the handshake, before ServerInfo.
		dc, _ := derptest.DialRaw(t, node, key.NewNode(), nil)
		if m, err := dc.Recv(); err == nil {
			t.Fatalf("a client over max_clients got %T", m)
		}
		if got := r.DERP().Stats().RejectedFull.Load(); got != 1 {
			t.Fatalf("derp RejectedFull = %d, want 1", got)
		}
	})
	t.Run("max_clients leaves room for mesh peers", func(t *testing.T) {
		mk := strings.Repeat("5a", 32)
		keyFile := t.TempDir() + "/mesh.key"
		if err := os.WriteFile(keyFile, []byte(mk+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, region := startRelay(t, selfSignedYAML+"  max_clients: 1\n  mesh:\n    key_file: "+keyFile+
			"\n    peers: [\"https://127.0.0.1:9/derp\"]\n")
		node := region.Nodes[0]
		a := derptest.Connect(t, region, key.NewNode())

		// A second client is turned away after the handshake, before ServerInfo.
		dc, _ := derptest.DialRaw(t, node, key.NewNode(), nil)
		for {
			m, err := dc.Recv()
			if err != nil {
				break
			}
			if _, ok := m.(derp.ServerInfoMessage); ok {
				t.Fatal("a client over max_clients got ServerInfo")
			}
		}
		if got := r.DERP().Stats().RejectedFull.Load(); got != 1 {
			t.Fatalf("derp RejectedFull = %d, want 1", got)
		}

		// The mesh peer still gets in, and sees the client that is there.
		tsMesh, err := key.ParseDERPMesh(mk)
		if err != nil {
			t.Fatal(err)
		}
		m := derptest.Connect(t, region, key.NewNode(), func(c *derphttp.Client) {
			c.MeshKey = tsMesh
			c.WatchConnectionChanges = true
		})
		for {
			if pp, ok := m.Next().(derp.PeerPresentMessage); ok && pp.Key == a.Pub() {
				break
			}
		}
		// Freeing the regular slot lets the next client in.
		a.Client.Close()
		waitFor(t, "the slot to be given back", func() bool { return r.DERP().Stats().CurrentConns.Load() == 1 })
		derptest.Connect(t, region, key.NewNode())
	})
	t.Run("mesh peers pass the accept rate", func(t *testing.T) {
		mk := strings.Repeat("6b", 32)
		keyFile := t.TempDir() + "/mesh.key"
		if err := os.WriteFile(keyFile, []byte(mk+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, region := startRelay(t, selfSignedYAML+"  accept_rate: 1\n  accept_burst: 2\n  mesh:\n    key_file: "+keyFile+"\n")
		tsMesh, err := key.ParseDERPMesh(mk)
		if err != nil {
			t.Fatal(err)
		}
		asPeer := func(c *derphttp.Client) { c.MeshKey = tsMesh }
		derptest.Connect(t, region, key.NewNode(), asPeer) // the relay learns the peer's address
		// Another address spends the rest of the accept budget...
		addr := strings.TrimPrefix(derptest.URL(region.Nodes[0]), "https://")
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		for r.ListenerStats().RejectedRate.Load() == 0 {
			if c, err := d.Dial("tcp", addr); err == nil {
				defer c.Close()
			}
		}
		// ...and the mesh peer still gets in.
		derptest.Connect(t, region, key.NewNode(), asPeer)
	})
	t.Run("accept_rate", func(t *testing.T) {
		r, region := startRelay(t, selfSignedYAML+"  accept_rate: 1\n  accept_burst: 3\n")
		addr := strings.TrimPrefix(derptest.URL(region.Nodes[0]), "https://")
		for range 10 {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
			}
		}
		waitFor(t, "rejections over the accept rate", func() bool { return r.ListenerStats().RejectedRate.Load() >= 5 })
	})
	t.Run("client_rate is advertised in ServerInfo", func(t *testing.T) {
		_, region := startRelay(t, selfSignedYAML+"  client_rate: 100000\n")
		dc, _ := derptest.DialRaw(t, region.Nodes[0], key.NewNode(), nil)
		m, err := dc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		si, ok := m.(derp.ServerInfoMessage)
		if !ok || si.TokenBucketBytesPerSecond != 100000 || si.TokenBucketBytesBurst < 65568 {
			t.Fatalf("ServerInfo %+v", m)
		}
	})
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestConnectChurnLeaks connects and disconnects 5,000 clients and checks that goroutines
// and file descriptors come back to where they started.
func TestConnectChurnLeaks(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML+"  keepalive: 1s\n  accept_rate: 1000000\n  accept_rate_per_source: 1000000\n  max_pending_per_source: 128\n  max_clients: 100000\n")
	node := region.Nodes[0]
	// Warm up once so pools and lazily started goroutines (the idle watch, which the
	// warm-up client starts by parking) exist before the baseline.
	dc, conn := derptest.DialRaw(t, node, key.NewNode(), nil)
	dc.Recv()
	waitFor(t, "warm-up connection to park", func() bool { return r.DERP().Stats().IdleParked.Load() == 1 })
	conn.Close()
	waitFor(t, "warm-up connection to go", func() bool { return r.DERP().Stats().CurrentConns.Load() == 0 })
	runtime.GC()
	g0, fd0 := runtime.NumGoroutine(), openFDs()

	const cycles = 5000
	for i := range cycles {
		dc, conn := derptest.DialRaw(t, node, key.NewNode(), nil)
		if i%2 == 0 { // half of them finish the handshake, half vanish right after ClientInfo
			if _, err := dc.Recv(); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
		}
		conn.Close()
	}
	waitFor(t, "all connections to be gone", func() bool {
		return r.DERP().Stats().CurrentConns.Load() == 0 && r.ListenerStats().Open.Load() == 0
	})
	var g1, fd1 int
	waitFor(t, "goroutines and fds to settle", func() bool {
		runtime.GC()
		g1, fd1 = runtime.NumGoroutine(), openFDs()
		return g1 <= g0+2 && fd1 <= fd0+2
	})
	t.Logf("after %d cycles: goroutines %d → %d, fds %d → %d, accepts %d", cycles, g0, g1, fd0, fd1, r.ListenerStats().Accepted.Load())
}
