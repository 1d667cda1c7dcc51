package stun

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"testing"
	"time"
)

// serve starts a Server on addr and stops it (checking that Serve returned
// nil) when the test ends.
func serve(t testing.TB, addr string) *Server {
	t.Helper()
	s, err := Listen(addr, nil)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s
}

// serverPort is the port the server is bound to.
func serverPort(s *Server) uint16 { return uint16(s.Addr().(*net.UDPAddr).Port) }

// dial connects a UDP client socket from the given local IP to the server's
// port on dst.
func dial(t testing.TB, network string, dst netip.Addr, s *Server) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, serverPort(s))))
	if err != nil {
		t.Fatalf("dial %v: %v", dst, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// localAddrPort is the client's own address, as the server should see it.
func localAddrPort(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// exchange sends req and returns the first reply, failing after 5 s.
func exchange(t testing.TB, c *net.UDPConn, req []byte) []byte {
	t.Helper()
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to a valid request: %v", err)
	}
	return buf[:n]
}

// expectSilence fails if anything arrives on c within d.
func expectSilence(t testing.TB, c *net.UDPConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	if err == nil {
		t.Fatalf("unexpected reply (%d bytes): % x", n, buf[:n])
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
}

// checkWire verifies a response byte by byte, independently of any STUN
// library: size, type, one XOR-MAPPED-ADDRESS with the right family, and
// the decoded address.
func checkWire(resp []byte, tx TxID, want netip.AddrPort) error {
	family, size := byte(1), 32
	if want.Addr().Is6() {
		family, size = 2, 44
	}
	switch {
	case len(resp) != size:
		return fmt.Errorf("response is %d bytes, want %d", len(resp), size)
	case binary.BigEndian.Uint16(resp[0:2]) != 0x0101:
		return fmt.Errorf("type %#04x, want 0x0101", binary.BigEndian.Uint16(resp[0:2]))
	case int(binary.BigEndian.Uint16(resp[2:4])) != size-20:
		return fmt.Errorf("length field %d, want %d", binary.BigEndian.Uint16(resp[2:4]), size-20)
	case binary.BigEndian.Uint32(resp[4:8]) != 0x2112A442:
		return fmt.Errorf("bad magic cookie % x", resp[4:8])
	case !bytes.Equal(resp[8:20], tx[:]):
		return fmt.Errorf("txid % x, want % x", resp[8:20], tx[:])
	case binary.BigEndian.Uint16(resp[20:22]) != 0x0020:
		return fmt.Errorf("attribute %#04x, want XOR-MAPPED-ADDRESS 0x0020", binary.BigEndian.Uint16(resp[20:22]))
	case int(binary.BigEndian.Uint16(resp[22:24])) != size-24:
		return fmt.Errorf("attribute length %d, want %d", binary.BigEndian.Uint16(resp[22:24]), size-24)
	case resp[24] != 0 || resp[25] != family:
		return fmt.Errorf("family bytes % x, want 00 %02x", resp[24:26], family)
	}
	port := binary.BigEndian.Uint16(resp[26:28]) ^ 0x2112
	ipb := make([]byte, size-28)
	for i := range ipb {
		ipb[i] = resp[28+i] ^ resp[4+i]
	}
	ip, _ := netip.AddrFromSlice(ipb)
	if got := netip.AddrPortFrom(ip, port); got != want {
		return fmt.Errorf("mapped address %v, want %v", got, want)
	}
	return nil
}

// Raw request builders, independent of both the code under test and the
// client libraries, for the malformed-input table.

func header(typ uint16, length int, tx TxID) []byte {
	b := make([]byte, 20, 20+length)
	binary.BigEndian.PutUint16(b[0:2], typ)
	binary.BigEndian.PutUint16(b[2:4], uint16(length))
	binary.BigEndian.PutUint32(b[4:8], 0x2112A442)
	copy(b[8:], tx[:])
	return b
}

func appendAttr(b []byte, typ uint16, val []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendFingerprint adds a FINGERPRINT after fixing the header length to
// include it, as RFC 5389 §15.5 requires.
func appendFingerprint(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-20+8))
	crc := crc32.ChecksumIEEE(b) ^ 0x5354554e
	return appendAttr(b, 0x8028, binary.BigEndian.AppendUint32(nil, crc))
}

// fixLength sets the header length to the attributes that follow.
func fixLength(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-20))
	return b
}

var testTx = TxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// malformed are datagrams the server must not answer.
func malformed() []struct {
	name string
	pkt  []byte
} {
	good := appendFingerprint(appendAttr(header(1, 0, testTx), 0x8022, []byte("tailnode")))
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0xff; return b }
	junk := make([]byte, 65507) // largest IPv4 UDP payload
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	bigValidHeader := append(bytes.Clone(good), make([]byte, 65507-len(good))...)
	oddLen := append(header(1, 2, testTx), 0, 0)
	truncated := append(header(1, 8, testTx), 0x80, 0x22, 0x00, 0x08, 't', 'a', 'i', 'l')
	// An attribute whose declared length runs past a consistent header length.
	overlong := append(header(1, 8, testTx), 0x80, 0x22, 0x00, 0x64, 't', 'a', 'i', 'l')
	fpNotLast := appendAttr(appendFingerprint(header(1, 0, testTx)), 0x8022, []byte("tailnode"))
	fixLength(fpNotLast)
	fpBadLen := fixLength(appendAttr(header(1, 0, testTx), 0x8028, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	resp := make([]byte, maxResponseLen)
	resp = resp[:appendResponse(resp, testTx, netip.MustParseAddrPort("192.0.2.1:1234"))]
	return []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"19 bytes", good[:19]},
		{"header only, wrong cookie", flip(header(1, 0, testTx), 5)},
		{"wrong cookie", flip(good, 4)},
		{"top bits set", flip(good, 0)},
		{"length field too long", func() []byte { b := bytes.Clone(good); b[3] += 4; return b }()},
		{"length field too short", func() []byte { b := bytes.Clone(good); b[3] -= 4; return b }()},
		{"length not a multiple of 4", oddLen},
		{"truncated attribute value", truncated},
		{"attribute length past the end", overlong},
		{"bad fingerprint", flip(good, len(good)-1)},
		{"fingerprint wrong size", fpBadLen},
		{"fingerprint not last", fpNotLast},
		{"binding success response", resp},
		{"binding indication", appendFingerprint(header(0x0011, 0, testTx))},
		{"binding error response", appendFingerprint(header(0x0111, 0, testTx))},
		{"allocate request", appendFingerprint(header(0x0003, 0, testTx))},
		{"request with trailing bytes", append(bytes.Clone(good), 0, 0, 0, 0)},
		{"64 KiB junk", junk},
		{"64 KiB after a valid request", bigValidHeader},
	}
}
