package stun

import (
	"net"
	"net/netip"
	"testing"
	"time"

	tsstun "tailscale.com/net/stun"
)

// hotPath drives one request through exactly the code Serve runs per packet
// (readAndHandle) plus the client's own write and read, on real sockets.
type hotPath struct {
	s    *Server
	c    *net.UDPConn
	req  []byte
	resp []byte
}

func newHotPath(tb testing.TB, listen, network string, dst netip.Addr) *hotPath {
	tb.Helper()
	s, err := Listen(listen, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	c := dial(tb, network, dst, s)
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	return &hotPath{s: s, c: c, req: tsstun.Request(tsstun.NewTxID()), resp: make([]byte, 128)}
}

func (h *hotPath) roundTrip(tb testing.TB) {
	if _, err := h.c.Write(h.req); err != nil {
		tb.Fatal(err)
	}
	if err := h.s.readAndHandle(); err != nil {
		tb.Fatal(err)
	}
	if _, err := h.c.Read(h.resp); err != nil {
		tb.Fatal(err)
	}
}

func (h *hotPath) junk(tb testing.TB, pkt []byte) {
	if _, err := h.c.Write(pkt); err != nil {
		tb.Fatal(err)
	}
	if err := h.s.readAndHandle(); err != nil {
		tb.Fatal(err)
	}
}

type hotCase struct {
	name, listen, network string
	dst                   netip.Addr
}

func hotCases(tb testing.TB) []hotCase {
	cs := []hotCase{{"ipv4", "127.0.0.1:0", "udp4", lo4}}
	if haveIPv6Loopback() {
		cs = append(cs,
			hotCase{"ipv6", "[::1]:0", "udp6", lo6},
			hotCase{"dual-stack ipv4", "[::]:0", "udp4", lo4})
	}
	return cs
}

// TestHotPathAllocs proves the per-packet path does not allocate, for
// answered requests and for dropped junk.
func TestHotPathAllocs(t *testing.T) {
	for _, hc := range hotCases(t) {
		t.Run(hc.name, func(t *testing.T) {
			h := newHotPath(t, hc.listen, hc.network, hc.dst)
			h.roundTrip(t) // warm up lazy initialisation (crc table, poller)
			if a := testing.AllocsPerRun(500, func() { h.roundTrip(t) }); a != 0 {
				t.Errorf("answered request: %v allocations per packet, want 0", a)
			}
			for _, tc := range malformed() {
				if len(tc.pkt) > 1500 {
					continue
				}
				if a := testing.AllocsPerRun(50, func() { h.junk(t, tc.pkt) }); a != 0 {
					t.Errorf("dropped %s: %v allocations per packet, want 0", tc.name, a)
				}
			}
			st := h.s.Stats()
			if st.Success != 502 {
				t.Errorf("stats %+v, want 502 successes", st)
			}
		})
	}
}

// BenchmarkServe measures one request/response round trip over loopback,
// client side included.
func BenchmarkServe(b *testing.B) {
	for _, hc := range hotCases(b) {
		b.Run(hc.name, func(b *testing.B) {
			h := newHotPath(b, hc.listen, hc.network, hc.dst)
			b.ReportAllocs()
			for b.Loop() {
				h.roundTrip(b)
			}
		})
	}
}

// BenchmarkParseAndRespond is the CPU cost alone: validate Tailscale's
// 40-byte request (FINGERPRINT CRC included) and build the answer.
func BenchmarkParseAndRespond(b *testing.B) {
	req := tsstun.Request(tsstun.NewTxID())
	out := make([]byte, maxResponseLen)
	src := netip.MustParseAddrPort("[::ffff:198.51.100.7]:41641")
	b.ReportAllocs()
	for b.Loop() {
		tx, err := parseBindingRequest(req)
		if err != nil {
			b.Fatal(err)
		}
		appendResponse(out, tx, src)
	}
}
