package stun

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	pion "github.com/pion/stun/v3"
	tsstun "tailscale.com/net/stun"
)

// responseAddrs are the client addresses each accepted request is answered
// for in the fuzz target, including an IPv4-mapped one that must come out as
// family 1.
var responseAddrs = []netip.AddrPort{
	netip.MustParseAddrPort("127.0.0.1:3478"),
	netip.MustParseAddrPort("203.0.113.9:65535"),
	netip.MustParseAddrPort("[::ffff:198.51.100.7]:1"),
	netip.MustParseAddrPort("[::1]:41641"),
	netip.MustParseAddrPort("[2001:db8::1234:5678]:12345"),
}

func pionRequest(tb testing.TB, setters ...pion.Setter) []byte {
	tb.Helper()
	m, err := pion.Build(append([]pion.Setter{pion.NewTransactionIDSetter(testTx), pion.BindingRequest}, setters...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

func TestParseAccepts(t *testing.T) {
	for name, pkt := range map[string][]byte{
		"tailscale":                tsstun.Request(tsstun.TxID(testTx)),
		"pion classic":             pionRequest(t),
		"pion fingerprint":         pionRequest(t, pion.Fingerprint),
		"pion software+fp":         pionRequest(t, pion.NewSoftware("pion"), pion.Fingerprint),
		"pion odd-length attr":     pionRequest(t, pion.NewUsername("abc"), pion.Fingerprint),
		"raw unknown attr, no fp":  fixLength(appendAttr(header(1, 0, testTx), 0xC001, []byte{9})),
		"raw change-request":       fixLength(appendAttr(header(1, 0, testTx), 0x0003, []byte{0, 0, 0, 6})),
		"raw fingerprint, no attr": appendFingerprint(header(1, 0, testTx)),
	} {
		tx, err := parseBindingRequest(pkt)
		if err != nil {
			t.Errorf("%s: rejected: %v (% x)", name, err, pkt)
		} else if tx != testTx {
			t.Errorf("%s: txid %x, want %x", name, tx, testTx)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range malformed() {
		if _, err := parseBindingRequest(tc.pkt); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestResponseMatchesTailscale: our response is byte-identical to Tailscale's
// stun.Response for the unmapped address, and passes the wire checker.
func TestResponseMatchesTailscale(t *testing.T) {
	buf := make([]byte, maxResponseLen)
	for _, ap := range responseAddrs {
		n := appendResponse(buf, testTx, ap)
		want := tsstun.Response(tsstun.TxID(testTx), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("%v: response\n% x\nwant tailscale's\n% x", ap, buf[:n], want)
		}
		if err := checkWire(buf[:n], testTx, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())); err != nil {
			t.Errorf("%v: %v", ap, err)
		}
	}
}

func FuzzParseBindingRequest(f *testing.F) {
	f.Add(tsstun.Request(tsstun.TxID(testTx)))
	f.Add(pionRequest(f))
	f.Add(pionRequest(f, pion.Fingerprint))
	f.Add(pionRequest(f, pion.NewUsername("abc"), pion.NewSoftware("x"), pion.Fingerprint))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add(bytes.Repeat([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, 8))
	for _, tc := range malformed() {
		if len(tc.pkt) < 4096 {
			f.Add(tc.pkt)
		}
	}
	resp := make([]byte, maxResponseLen)
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := parseBindingRequest(b)
		consistent := len(b) >= 20 && int(binary.BigEndian.Uint16(b[2:4])) == len(b)-20
		if err != nil {
			// Being more lenient than derper: whatever Tailscale's own parser
			// takes as a request (with a consistent length) we take too.
			if _, tsErr := tsstun.ParseBindingRequest(b); tsErr == nil && consistent {
				t.Fatalf("rejected (%v) a request tailscale accepts: % x", err, b)
			}
			return
		}
		if !consistent || binary.BigEndian.Uint16(b[0:2]) != 1 || !bytes.Equal(b[4:8], []byte{0x21, 0x12, 0xa4, 0x42}) {
			t.Fatalf("accepted a datagram that is not a Binding Request: % x", b)
		}
		if !bytes.Equal(tx[:], b[8:20]) {
			t.Fatalf("txid %x not from the header % x", tx, b[8:20])
		}
		// An independent RFC 5389 decoder must agree that it is one.
		m := &pion.Message{Raw: bytes.Clone(b)}
		if err := m.Decode(); err != nil {
			t.Fatalf("accepted but pion cannot decode it: %v: % x", err, b)
		}
		if m.Type != pion.BindingRequest || m.TransactionID != tx {
			t.Fatalf("pion sees type %v txid %x", m.Type, m.TransactionID)
		}
		if m.Contains(pion.AttrFingerprint) {
			if err := pion.Fingerprint.Check(m); err != nil {
				t.Fatalf("accepted a FINGERPRINT pion rejects: %v: % x", err, b)
			}
		}
		for _, ap := range responseAddrs {
			n := appendResponse(resp, tx, ap)
			gotTx, got, err := tsstun.ParseResponse(resp[:n])
			want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if err != nil || gotTx != tsstun.TxID(tx) || got != want {
				t.Fatalf("tailscale parses our response for %v as %x %v %v", ap, gotTx, got, err)
			}
			if err := checkWire(resp[:n], tx, want); err != nil {
				t.Fatalf("response for %v: %v", ap, err)
			}
		}
	})
}
