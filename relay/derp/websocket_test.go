package derp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
)

// wsFrame builds a masked client frame.
func wsFrame(op byte, fin bool, payload []byte) []byte {
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch {
	case len(payload) < 126:
		b[1] |= byte(len(payload))
	case len(payload) <= 0xffff:
		b[1] |= 126
		b = append(b, byte(len(payload)>>8), byte(len(payload)))
	default:
		b[1] |= 127
		n := uint64(len(payload))
		b = append(b, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	mask := []byte{1, 2, 3, 4}
	b = append(b, mask...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	return b
}

type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

func TestWebSocketReassembly(t *testing.T) {
	var in []byte
	in = append(in, wsFrame(wsOpBinary, false, []byte("hello "))...)
	in = append(in, wsFrame(wsOpPing, true, []byte("p"))...)
	in = append(in, wsFrame(wsOpCont, true, []byte("world"))...)
	in = append(in, wsFrame(wsOpBinary, true, bytes.Repeat([]byte("x"), 70000))...)
	in = append(in, wsFrame(wsOpClose, true, []byte{3, 232})...)
	c := newWSConn(nopConn{}, bufio.NewReader(bytes.NewReader(in)))
	got, err := io.ReadAll(c)
	if err != errWSClosed {
		t.Fatalf("err %v, want close", err)
	}
	want := append([]byte("hello world"), bytes.Repeat([]byte("x"), 70000)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(want))
	}
	for name, bad := range map[string][]byte{
		"unmasked":     {0x82, 0x01, 'x'},
		"text":         wsFrame(wsOpText, true, []byte("x")),
		"reserved bit": append([]byte{0xc2}, wsFrame(wsOpBinary, true, []byte("x"))[1:]...),
		"big control":  wsFrame(wsOpPing, true, make([]byte, 200)),
		"bad opcode":   wsFrame(0x3, true, nil),
	} {
		c := newWSConn(nopConn{}, bufio.NewReader(bytes.NewReader(bad)))
		if _, err := io.ReadAll(c); err == nil || err == errWSClosed {
			t.Errorf("%s: accepted (err %v)", name, err)
		}
	}
}

func FuzzWebSocket(f *testing.F) {
	f.Add(wsFrame(wsOpBinary, true, []byte("derp")))
	f.Add(append(wsFrame(wsOpBinary, false, []byte("a")), wsFrame(wsOpCont, true, []byte("b"))...))
	f.Add(wsFrame(wsOpClose, true, nil))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newWSConn(nopConn{}, bufio.NewReader(bytes.NewReader(in)))
		buf := make([]byte, 512)
		for range 1000 {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
}
