package relay

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// admissionBed is a guarded listener on loopback; clients dial it from 127.0.0.x.
type admissionBed struct {
	t        *testing.T
	ln       net.Listener
	stats    *ListenerStats
	accepted chan *admittedConn
}

func newAdmissionBed(t *testing.T, lim admitLimits) *admissionBed {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &admissionBed{t: t, stats: &ListenerStats{}, accepted: make(chan *admittedConn, 100)}
	b.ln = &guardedListener{Listener: ln, adm: newAdmission(lim, b.stats)}
	go func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			b.accepted <- c.(*admittedConn)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

// dial connects from 127.0.0.host and reports whether the listener kept the connection
// (a turned-away one is closed at once).
func (b *admissionBed) dial(host byte) (net.Conn, bool) {
	b.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, host)}}
	before := b.stats.Accepted.Load() + b.rejected()
	c, err := d.Dial("tcp", b.ln.Addr().String())
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { c.Close() })
	testenv.WaitFor(b.t, 10*time.Second, "the listener to decide", func() bool { return b.stats.Accepted.Load()+b.rejected() > before })
	return c, !closed(c)
}

func (b *admissionBed) rejected() int64 {
	s := b.stats
	return s.RejectedRate.Load() + s.RejectedSourceRate.Load() + s.RejectedSourcePending.Load() + s.RejectedPendingFull.Load()
}

// closed reports whether the peer closed c (within a moment; it was decided already).
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	c.SetReadDeadline(time.Time{})
	return err == io.EOF || (err != nil && !isTimeout(err))
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestAdmissionPerSourceRate(t *testing.T) {
	b := newAdmissionBed(t, admitLimits{SourceRate: 1, SourceBurst: 2, AcceptRate: 1000, AcceptBurst: 1000})
	kept := 0
	for range 5 {
		if _, ok := b.dial(2); ok {
			kept++
		}
	}
	if kept != 2 || b.stats.RejectedSourceRate.Load() != 3 {
		t.Fatalf("kept %d from one address, rejected %d; want 2 and 3", kept, b.stats.RejectedSourceRate.Load())
	}
	// Another address has its own budget, and the global one was not spent by the first.
	if _, ok := b.dial(3); !ok {
		t.Fatal("a second address was turned away")
	}
}

func TestAdmissionGlobalRate(t *testing.T) {
	b := newAdmissionBed(t, admitLimits{AcceptRate: 1, AcceptBurst: 1})
	b.dial(2)
	if _, ok := b.dial(3); ok || b.stats.RejectedRate.Load() != 1 {
		t.Fatalf("over the global rate: kept %v, RejectedRate %d", ok, b.stats.RejectedRate.Load())
	}
}

func TestAdmissionPendingPool(t *testing.T) {
	b := newAdmissionBed(t, admitLimits{MaxPending: 4, MaxPendingPerSource: 3})
	var heavy []net.Conn
	for range 3 {
		c, ok := b.dial(2)
		if !ok {
			t.Fatal("turned away below the limits")
		}
		heavy = append(heavy, c)
	}
	if _, ok := b.dial(2); ok || b.stats.RejectedSourcePending.Load() != 1 {
		t.Fatal("a fourth pending connection from one address was kept")
	}
	b.dial(3) // the pool is full now: 3 + 1
	// A newcomer from a third address makes room: the oldest of the address holding most.
	if _, ok := b.dial(4); !ok {
		t.Fatal("a newcomer was turned away while one address held three of four places")
	}
	if b.stats.Evicted.Load() != 1 || !closed(heavy[0]) || closed(heavy[1]) {
		t.Fatalf("evicted %d; oldest closed %v, next closed %v", b.stats.Evicted.Load(), closed(heavy[0]), closed(heavy[1]))
	}
	// Now 2 + 1 + 1: a second connection from 127.0.0.3 would hold as many as the heaviest.
	if _, ok := b.dial(3); ok || b.stats.RejectedPendingFull.Load() != 1 {
		t.Fatalf("kept a connection that would only shift the imbalance (full %d)", b.stats.RejectedPendingFull.Load())
	}
	// An authenticated connection leaves the pool: room for one more.
	<-b.accepted // the evicted one
	(<-b.accepted).Admitted()
	if b.stats.Pending.Load() != 3 || b.stats.Admitted.Load() != 1 {
		t.Fatalf("pending %d, admitted %d", b.stats.Pending.Load(), b.stats.Admitted.Load())
	}
	if _, ok := b.dial(3); !ok {
		t.Fatal("turned away with a place free")
	}
}

func TestAdmissionMeshPeerWayIn(t *testing.T) {
	peer := netip.MustParseAddr("127.0.0.9")
	b := newAdmissionBed(t, admitLimits{AcceptRate: 1, AcceptBurst: 2, SourceRate: 1, SourceBurst: 1,
		MaxPending: 2, MaxPendingPerSource: 2, IsMeshPeer: func(a netip.Addr) bool { return a == peer }})
	b.dial(2)
	b.dial(3)          // the pool is full and the global rate spent
	for i := range 3 { // over every limit at once, yet kept, and nobody closed for them
		if _, ok := b.dial(9); !ok {
			t.Fatalf("mesh peer's connection %d turned away", i)
		}
	}
	if _, ok := b.dial(4); ok {
		t.Fatal("a newcomer got in over the global rate")
	}
	if b.stats.Pending.Load() != 5 || b.stats.Evicted.Load() != 0 {
		t.Fatalf("pending %d, evicted %d; want 5 and 0", b.stats.Pending.Load(), b.stats.Evicted.Load())
	}
}

func TestAdmissionPendingLifetime(t *testing.T) {
	b := newAdmissionBed(t, admitLimits{PendingLifetime: 2 * time.Second})
	c, _ := b.dial(2)
	kept, _ := b.dial(2)
	<-b.accepted // c's
	(<-b.accepted).Admitted()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data on an idle connection")
	}
	testenv.WaitFor(t, 10*time.Second, "the expiry to be counted", func() bool { return b.stats.Expired.Load() == 1 })
	if closed(kept) {
		t.Fatal("an admitted connection expired")
	}
	if b.stats.Pending.Load() != 0 || b.stats.Open.Load() != 1 {
		t.Fatalf("pending %d, open %d", b.stats.Pending.Load(), b.stats.Open.Load())
	}
}

func TestSourcePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":             "192.0.2.7/32",
		"::ffff:192.0.2.7":      "192.0.2.7/32",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::1234": "2001:db8:1:2::/64",
	} {
		if got := sourcePrefix(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// addrConn is a connection from a given address (the rest of it is a pipe).
type addrConn struct {
	net.Conn
	from *net.TCPAddr
}

func (c addrConn) RemoteAddr() net.Addr { return c.from }

func TestAdmissionSourceTableBounded(t *testing.T) {
	a := newAdmission(admitLimits{SourceRate: 1000, SourceBurst: 1}, &ListenerStats{})
	for i := range 3 * maxSources {
		p, _ := net.Pipe()
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if c := a.admit(addrConn{p, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 1))}); c != nil {
			c.Close()
		}
	}
	if n := len(a.sources); n >= 2*maxSources {
		t.Fatalf("%d sources remembered, want under %d", n, 2*maxSources)
	}
}
