package derp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func newTestServer(t testing.TB) *Server {
	t.Helper()
	priv, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(priv, Options{HandshakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientInfoFrame builds a valid ClientInfo frame from a fresh client key.
func clientInfoFrame(t testing.TB, s *Server, info clientInfo) (Key, []byte) {
	t.Helper()
	cpriv, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(info)
	sealed, err := cpriv.sealTo(s.pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	cpub := cpriv.Public()
	return cpub, frame(frameClientInfo, append(cpub[:], sealed...))
}

func frame(typ byte, payload []byte) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// fakeConn reads a fixed input and records what the server writes. At the end of the input
// it waits for linger (so the send loop can answer the last frames) and then reports EOF.
type fakeConn struct {
	in     *bytes.Reader
	linger time.Duration
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.in.Len() == 0 && c.linger > 0 {
		select {
		case <-time.After(c.linger):
		case <-c.closed:
		}
	}
	return c.in.Read(p)
}

func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *fakeConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// serve runs HandleConn over input; it returns the server's error and everything it wrote.
func serve(t testing.TB, s *Server, input []byte, linger time.Duration) ([]byte, error) {
	t.Helper()
	c := &fakeConn{in: bytes.NewReader(input), linger: linger, closed: make(chan struct{})}
	err := s.HandleConn(context.Background(), c, bufio.NewReader(c), bufio.NewWriter(c),
		netip.MustParseAddrPort("192.0.2.1:1234"))
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes()), err
}

// frames splits server output into frame types.
func frames(b []byte) []byte {
	var types []byte
	for len(b) >= frameHeaderLen {
		n := int(binary.BigEndian.Uint32(b[1:]))
		types = append(types, b[0])
		if len(b) < frameHeaderLen+n {
			break
		}
		b = b[frameHeaderLen+n:]
	}
	return types
}

func TestHandshakeRejects(t *testing.T) {
	s := newTestServer(t)
	_, good := clientInfoFrame(t, s, clientInfo{Version: 2, CanAckPings: true})
	badBox := bytes.Clone(good)
	badBox[len(badBox)-1] ^= 1
	cases := map[string][]byte{
		"not ClientInfo first":  frame(frameSendPacket, make([]byte, 40)),
		"ClientInfo too short":  frame(frameClientInfo, make([]byte, 10)),
		"ClientInfo too long":   append([]byte{frameClientInfo, 0x00, 0x10, 0x00, 0x00}, make([]byte, 16)...),
		"box does not open":     badBox,
		"garbage after upgrade": []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"truncated":             good[:30],
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := serve(t, s, in, 0)
			if err == nil {
				t.Fatal("handshake accepted")
			}
			if got := frames(out); !bytes.Equal(got, []byte{frameServerKey}) {
				t.Fatalf("server sent frames %x, want only ServerKey", got)
			}
		})
	}
	if n := s.stats.CurrentConns.Load(); n != 0 {
		t.Fatalf("%d connections still registered", n)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	s := newTestServer(t)
	s.opts.HandshakeTimeout = 200 * time.Millisecond
	srv, cli := net.Pipe()
	defer cli.Close()
	go io.Copy(io.Discard, cli)
	err := s.HandleConn(context.Background(), srv, bufio.NewReader(srv), bufio.NewWriter(srv), netip.AddrPort{})
	if err == nil {
		t.Fatal("a silent client passed the handshake")
	}
}

func TestFrameLimits(t *testing.T) {
	s := newTestServer(t)
	cases := map[string][]byte{
		"SendPacket over 64 KiB":        frame(frameSendPacket, make([]byte, keyLen+MaxPacketSize+1)),
		"SendPacket shorter than a key": frame(frameSendPacket, make([]byte, 5)),
		"NotePreferred of 2 bytes":      frame(frameNotePreferred, []byte{1, 1}),
		"Ping too long":                 frame(framePing, make([]byte, maxPingLen+1)),
		"WatchConns without mesh key":   frame(frameWatchConns, nil),
		"ForwardPacket without mesh":    frame(frameForwardPacket, make([]byte, 2*keyLen+1)),
		"ClosePeer without mesh":        frame(frameClosePeer, make([]byte, keyLen)),
		"unknown frame over 1 MiB":      {0x7f, 0x01, 0x00, 0x00, 0x01},
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			_, ci := clientInfoFrame(t, s, clientInfo{Version: 2})
			out, err := serve(t, s, append(ci, tail...), 0)
			if err == nil {
				t.Fatal("connection not closed on a bad frame")
			}
			if got := frames(out); len(got) < 2 || got[1] != frameServerInfo {
				t.Fatalf("frames %x: ServerInfo must follow ServerKey", got)
			}
		})
	}
	// An unknown small frame and a client Pong are skipped, not fatal.
	_, ci := clientInfoFrame(t, s, clientInfo{Version: 2})
	in := append(ci, frame(0x7f, []byte("future"))...)
	in = append(in, frame(framePong, make([]byte, 8))...)
	in = append(in, frame(framePing, []byte("12345678"))...)
	out, err := serve(t, s, in, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("unknown frames were fatal: %v", err)
	}
	if got := frames(out); !bytes.Contains(got, []byte{framePong}) {
		t.Fatalf("no Pong after unknown frames: %x", got)
	}
}

func TestPeerPresentLayout(t *testing.T) {
	// A mesh watcher sees PeerPresent frames of 51 bytes with the IPv4 address mapped.
	priv, _ := NewPrivateKey()
	var mk MeshKey
	mk[0] = 1
	s, err := NewServer(priv, Options{MeshKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	_, ci := clientInfoFrame(t, s, clientInfo{Version: 2, MeshKey: mk.String()})
	out, err := serve(t, s, append(ci, frame(frameWatchConns, nil)...), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Walk to the PeerPresent frame (about the watcher itself).
	for b := out; len(b) >= frameHeaderLen; {
		n := int(binary.BigEndian.Uint32(b[1:]))
		if b[0] == framePeerPresent {
			if n != peerPresentLen {
				t.Fatalf("PeerPresent of %d bytes, want %d", n, peerPresentLen)
			}
			p := b[frameHeaderLen:]
			ip, _ := netip.AddrFromSlice(p[keyLen : keyLen+16])
			if ip.String() != "::ffff:192.0.2.1" || binary.BigEndian.Uint16(p[keyLen+16:]) != 1234 {
				t.Fatalf("PeerPresent address %v", ip)
			}
			if p[keyLen+18] != peerPresentIsMeshPeer {
				t.Fatalf("flags %x", p[keyLen+18])
			}
			return
		}
		b = b[frameHeaderLen+n:]
	}
	t.Fatalf("no PeerPresent in %x", frames(out))
}

func FuzzClientInfo(f *testing.F) {
	s := newTestServer(f)
	_, ci := clientInfoFrame(f, s, clientInfo{Version: 2, CanAckPings: true})
	f.Add(ci[frameHeaderLen:])
	f.Add(make([]byte, minClientInfoLen))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseClientInfo(b, s.priv)
		if err == nil && h.key != [keyLen]byte(b[:keyLen]) {
			t.Fatal("hello does not carry the frame's key")
		}
	})
}

func FuzzFrames(f *testing.F) {
	f.Add(frame(frameSendPacket, make([]byte, keyLen+100)))
	f.Add(frame(framePing, []byte("abcdefgh")))
	f.Add(frame(frameNotePreferred, []byte{1}))
	f.Add(append(frame(0x42, []byte("x")), frame(frameClosePeer, make([]byte, 32))...))
	f.Add([]byte{frameSendPacket, 0xff, 0xff, 0xff, 0xff})
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, tail []byte) {
		_, ci := clientInfoFrame(t, s, clientInfo{Version: 2})
		serve(t, s, append(ci, tail...), 0)
		if n := s.stats.CurrentConns.Load(); n != 0 {
			t.Fatalf("%d connections left registered", n)
		}
	})
}
