package stun

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	pion "github.com/pion/stun/v3"
	"tailscale.com/net/netcheck"
	"tailscale.com/net/netmon"
	tsstun "tailscale.com/net/stun"
	"tailscale.com/net/stun/stuntest"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// tailscaleRoundTrip sends Tailscale's own request and parses the reply
// with Tailscale's own parser.
func tailscaleRoundTrip(t *testing.T, c *net.UDPConn) {
	t.Helper()
	tx := tsstun.NewTxID()
	resp := exchange(t, c, tsstun.Request(tx))
	gotTx, addr, err := tsstun.ParseResponse(resp)
	if err != nil {
		t.Fatalf("tailscale stun.ParseResponse: %v (% x)", err, resp)
	}
	if gotTx != tx {
		t.Errorf("txid %x, want %x", gotTx, tx)
	}
	if want := localAddrPort(c); addr != want {
		t.Errorf("tailscale parsed mapped address %v, want %v", addr, want)
	}
	if err := checkWire(resp, TxID(tx), localAddrPort(c)); err != nil {
		t.Error(err)
	}
}

func TestTailscaleClientIPv4(t *testing.T) {
	s := serve(t, "127.0.0.1:0")
	tailscaleRoundTrip(t, dial(t, "udp4", lo4, s))
	if st := s.Stats(); st.IPv4 != 1 || st.IPv6 != 0 || st.NotSTUN != 0 {
		t.Errorf("stats %+v, want one IPv4 request", st)
	}
}

func TestTailscaleClientIPv6(t *testing.T) {
	if !haveIPv6Loopback() {
		runInNetns(t)
		return
	}
	s := serve(t, "[::1]:0")
	tailscaleRoundTrip(t, dial(t, "udp6", lo6, s))
	if st := s.Stats(); st.IPv6 != 1 || st.IPv4 != 0 {
		t.Errorf("stats %+v, want one IPv6 request", st)
	}
}

// TestDualStack binds the wildcard (as ":port" does in production) and
// checks that an IPv4 client gets family 1 with its plain IPv4 address,
// not the ::ffff:a.b.c.d form derper sends, and an IPv6 client family 2.
func TestDualStack(t *testing.T) {
	if !haveIPv6Loopback() {
		runInNetns(t)
		return
	}
	s := serve(t, ":0")
	if ip := s.Addr().(*net.UDPAddr).IP; !ip.IsUnspecified() || ip.To4() != nil {
		t.Fatalf("Listen(\":0\") bound %v, want the IPv6 wildcard (dual-stack)", s.Addr())
	}
	// The IPv4 client's datagrams reach the wildcard socket as ::ffff:127.0.0.1.
	c4 := dial(t, "udp4", lo4, s)
	tailscaleRoundTrip(t, c4)
	pionRoundTrip(t, c4, pion.TransactionID, pion.BindingRequest)
	tailscaleRoundTrip(t, dial(t, "udp6", lo6, s))
	if st := s.Stats(); st.IPv4 != 2 || st.IPv6 != 1 {
		t.Errorf("stats %+v, want 2 IPv4 + 1 IPv6 requests", st)
	}
}

// TestNetcheck runs Tailscale's real netcheck against the server.
func TestNetcheck(t *testing.T) {
	s := serve(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &netcheck.Client{NetMon: netmon.NewStatic(), Logf: t.Logf, SkipExternalNetwork: true}
	if err := c.Standalone(ctx, "127.0.0.1:0"); err != nil {
		t.Fatalf("netcheck Standalone: %v", err)
	}
	r, err := c.GetReport(ctx, stuntest.DERPMapOf(s.Addr().String()), nil)
	if err != nil {
		t.Fatalf("netcheck GetReport: %v", err)
	}
	if !r.UDP || !r.IPv4 {
		t.Errorf("report UDP=%v IPv4=%v, want both true", r.UDP, r.IPv4)
	}
	lat, ok := r.RegionLatency[1]
	if !ok || lat <= 0 {
		t.Errorf("RegionLatency %v, want a latency for region 1", r.RegionLatency)
	}
	if r.PreferredDERP != 1 {
		t.Errorf("PreferredDERP %d, want 1", r.PreferredDERP)
	}
	if r.GlobalV4.Addr() != lo4 || r.GlobalV4.Port() == 0 {
		t.Errorf("GlobalV4 %v, want 127.0.0.1 with netcheck's port", r.GlobalV4)
	}
	st := waitStats(t, s, func(st Stats) bool { return st.Success > 0 && st.Success == st.IPv4 })
	if st.NotSTUN != 0 {
		t.Errorf("stats %+v, want no rejects", st)
	}
	t.Logf("netcheck: region 1 latency %v, GlobalV4 %v, server stats %+v", lat, r.GlobalV4, st)
}

// pionRoundTrip runs pion's STUN client (retransmits, txid matching) on c
// with a request built from setters, and checks the XOR-MAPPED-ADDRESS pion
// decodes.
func pionRoundTrip(t *testing.T, c *net.UDPConn, setters ...pion.Setter) {
	t.Helper()
	want := localAddrPort(c)
	client, err := pion.NewClient(noCloseConn{c}, pion.WithRTO(500*time.Millisecond))
	if err != nil {
		t.Fatalf("pion NewClient: %v", err)
	}
	defer client.Close()
	msg, err := pion.Build(setters...)
	if err != nil {
		t.Fatalf("pion Build: %v", err)
	}
	for _, a := range msg.Attributes {
		if a.Type == pion.AttrSoftware {
			t.Fatalf("test bug: request carries SOFTWARE")
		}
	}
	var got pion.XORMappedAddress
	var evErr error
	var raw []byte
	if err := client.Do(msg, func(ev pion.Event) {
		if ev.Error != nil {
			evErr = ev.Error
			return
		}
		raw = bytes.Clone(ev.Message.Raw)
		if ev.Message.Type != pion.BindingSuccess {
			evErr = fmt.Errorf("pion got type %v, want binding success", ev.Message.Type)
			return
		}
		evErr = got.GetFrom(ev.Message)
	}); err != nil {
		t.Fatalf("pion Do: %v", err)
	}
	if evErr != nil {
		t.Fatalf("pion: %v", evErr)
	}
	ip, _ := netip.AddrFromSlice(got.IP)
	if gotAP := netip.AddrPortFrom(ip, uint16(got.Port)); gotAP != want {
		t.Errorf("pion decoded %v, want %v", gotAP, want)
	}
	if wantLen := map[bool]int{true: net.IPv4len, false: net.IPv6len}[want.Addr().Is4()]; len(got.IP) != wantLen {
		t.Errorf("pion decoded a %d-byte address, want %d (family %d)", len(got.IP), wantLen, map[int]int{4: 1, 16: 2}[wantLen])
	}
	if err := checkWire(raw, TxID(msg.TransactionID), want); err != nil {
		t.Error(err)
	}
}

// noCloseConn keeps pion's Client.Close from closing the test's socket,
// which t.Cleanup owns; it only unblocks pion's reader goroutine.
type noCloseConn struct{ *net.UDPConn }

func (c noCloseConn) Close() error { return c.SetReadDeadline(time.Now()) }

// TestPionClient: a generic RFC 5389 client, with no SOFTWARE attribute,
// with and without FINGERPRINT, gets answered (derper would stay silent).
func TestPionClient(t *testing.T) {
	s := serve(t, "127.0.0.1:0")
	t.Run("classic", func(t *testing.T) {
		pionRoundTrip(t, dial(t, "udp4", lo4, s), pion.TransactionID, pion.BindingRequest)
	})
	t.Run("fingerprint", func(t *testing.T) {
		pionRoundTrip(t, dial(t, "udp4", lo4, s), pion.TransactionID, pion.BindingRequest, pion.Fingerprint)
	})
	t.Run("unknown attributes", func(t *testing.T) {
		pionRoundTrip(t, dial(t, "udp4", lo4, s), pion.TransactionID, pion.BindingRequest,
			pion.NewUsername("user"), pion.RawAttribute{Type: 0x8055, Value: []byte{1, 2, 3}}, pion.Fingerprint)
	})
	if haveIPv6Loopback() {
		s6 := serve(t, "[::1]:0")
		t.Run("ipv6", func(t *testing.T) {
			pionRoundTrip(t, dial(t, "udp6", lo6, s6), pion.TransactionID, pion.BindingRequest, pion.Fingerprint)
		})
	}
	if st := waitStats(t, s, func(st Stats) bool { return st.Success == 3 }); st.NotSTUN != 0 || st.IPv4 != 3 {
		t.Errorf("stats %+v, want 3 IPv4 requests and no rejects", st)
	}
}

// TestMalformed sends each bad datagram followed by a good request: the
// server handles datagrams in order, so the first reply must be the good
// one's, and nothing may follow it.
func TestMalformed(t *testing.T) {
	s := serve(t, "127.0.0.1:0")
	c := dial(t, "udp4", lo4, s)
	for _, tc := range malformed() {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			if _, err := c.Write(tc.pkt); err != nil {
				t.Fatalf("write: %v", err)
			}
			tx := tsstun.NewTxID()
			resp := exchange(t, c, tsstun.Request(tx))
			if err := checkWire(resp, TxID(tx), localAddrPort(c)); err != nil {
				t.Fatalf("first reply after the bad datagram: %v", err)
			}
			expectSilence(t, c, 50*time.Millisecond)
			after := s.Stats()
			if after.NotSTUN != before.NotSTUN+1 {
				t.Errorf("not_stun %d → %d, want +1", before.NotSTUN, after.NotSTUN)
			}
			if after.IPv4 != before.IPv4+1 {
				t.Errorf("ipv4 %d → %d, want +1 (only the good request counts)", before.IPv4, after.IPv4)
			}
		})
	}
	// The port-0 rule cannot be exercised over a real socket (the kernel
	// never delivers from port 0), so feed the handler directly.
	t.Run("source port 0", func(t *testing.T) {
		before := waitStats(t, s, func(st Stats) bool { return st.Success == uint64(len(malformed())) })
		s.handle(tsstun.Request(tsstun.NewTxID()), netip.AddrPortFrom(lo4, 0))
		s.handle(tsstun.Request(tsstun.NewTxID()), netip.MustParseAddrPort("[ff02::1]:3478"))
		after := s.Stats()
		if after.BadSource != before.BadSource+2 || after.Success != before.Success || after.WriteError != before.WriteError {
			t.Errorf("stats %+v → %+v, want bad_source +2 and nothing sent", before, after)
		}
	})
}

// TestShutdown: Serve returns nil once ctx ends and the port is free again.
func TestShutdown(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			s, err := Listen(addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			bound := s.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx) }()
			c := dial(t, "udp4", lo4, s)
			tailscaleRoundTrip(t, c) // it is really serving
			if err := s.Serve(ctx); err == nil {
				t.Error("second Serve returned nil, want an error")
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve after cancel: %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return after cancel")
			}
			s2, err := Listen(bound, nil)
			if err != nil {
				t.Fatalf("port not released: Listen(%q) again: %v", bound, err)
			}
			s2.Close()
		})
	}
}

func TestListenErrors(t *testing.T) {
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(s.Addr().String(), nil); err == nil || !strings.Contains(err.Error(), "bind") {
		t.Errorf("Listen on a taken port: %v, want a bind error", err)
	}
	if _, err := Listen("not-an-address", nil); err == nil {
		t.Error("Listen(\"not-an-address\") succeeded")
	}
	// A context that ended before Serve starts still gives nil, and the
	// startup line names the component and the bound address.
	var logBuf bytes.Buffer
	s2, err := Listen("127.0.0.1:0", slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s2.Serve(ctx); err != nil {
		t.Errorf("Serve with a done context: %v", err)
	}
	if l := logBuf.String(); !strings.Contains(l, "component=stun") || !strings.Contains(l, s2.Addr().String()) {
		t.Errorf("startup log %q lacks component=stun or the address", l)
	}
}

// waitStats polls the counters until ok holds: the server counts a success
// only after its write returns, which can be after the client has read it.
func waitStats(t *testing.T, s *Server, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never reached the expected state: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// haveIPv6Loopback reports whether ::1 can be bound here.
func haveIPv6Loopback() bool {
	if os.Getenv(forceNetnsEnv) == "1" {
		return false
	}
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

const (
	inNetnsEnv    = "EDGERELAY_STUN_IN_NETNS"
	forceNetnsEnv = "EDGERELAY_STUN_FORCE_NETNS" // exercise the netns path on a host that has ::1
)

// runInNetns re-runs the calling test inside a fresh network namespace with
// lo up, for hosts whose own lo has no ::1 (IPv6 disabled on the host).
func runInNetns(t *testing.T) {
	t.Helper()
	if os.Getenv(inNetnsEnv) == "1" {
		t.Fatal("no IPv6 loopback even inside a fresh network namespace (IPv6 disabled in the kernel?)")
	}
	testenv.RequireRoot(t)
	ip := testenv.RequireCommand(t, "ip")
	b := make([]byte, 4)
	rand.Read(b)
	ns := fmt.Sprintf("erst%x", b[:3])
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		testenv.Skip(t, fmt.Sprintf("cannot create a network namespace: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	if out, err := exec.Command(ip, "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", ns, err, out)
	}
	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1", forceNetnsEnv+"=0")
	out, err := cmd.CombinedOutput()
	t.Logf("ran in netns %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("test in netns failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatal("test in netns did not report PASS")
	}
}

// TestReadErrorRecovers forces real read errors (a read deadline in the past
// on the server's socket), checks they are counted and backed off, and that
// the server answers again once the socket is healthy.
func TestReadErrorRecovers(t *testing.T) {
	s := serve(t, "127.0.0.1:0")
	if err := s.conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	st := waitStats(t, s, func(st Stats) bool { return st.ReadError >= 3 })
	start := time.Now()
	if err := s.conn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	tailscaleRoundTrip(t, dial(t, "udp4", lo4, s))
	t.Logf("%d read errors before recovery; first answer %v after the socket was healthy again", st.ReadError, time.Since(start))
}
