package derp

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// WebSocket framing (RFC 6455), server side, just enough to carry DERP: the byte stream
// rides in binary messages that may split or join DERP frames anywhere.
const (
	wsGUID       = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsOpCont     = 0x0
	wsOpText     = 0x1
	wsOpBinary   = 0x2
	wsOpClose    = 0x8
	wsOpPing     = 0x9
	wsOpPong     = 0xa
	wsMaxControl = 125
	// wsMaxFrame bounds one incoming frame; DERP frames are at most ~64 KiB, and a client
	// may put several in one message, so allow generous but finite sizes.
	wsMaxFrame = 1 << 20
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsConn is a net.Conn over WebSocket binary messages.
type wsConn struct {
	net.Conn
	br *bufio.Reader

	// reader state (one reader goroutine)
	remaining uint64 // payload bytes left in the current data frame
	mask      [4]byte
	maskPos   int
	readErr   error

	wmu    sync.Mutex // writes come from the send loop and from pong replies
	closed bool
}

func newWSConn(nc net.Conn, br *bufio.Reader) *wsConn { return &wsConn{Conn: nc, br: br} }

// NetConn is the connection under the WebSocket framing.
func (c *wsConn) NetConn() net.Conn { return c.Conn }

var errWSClosed = errors.New("websocket: closed by peer")

func (c *wsConn) Read(p []byte) (int, error) {
	for c.remaining == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.nextDataFrame(); err != nil {
			c.readErr = err
			return 0, err
		}
	}
	if uint64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	for i := range n {
		p[i] ^= c.mask[c.maskPos&3]
		c.maskPos++
	}
	c.remaining -= uint64(n)
	return n, err
}

// wsHeader is one parsed frame header.
type wsHeader struct {
	fin    bool
	opcode byte
	masked bool
	length uint64
	mask   [4]byte
}

func readWSHeader(br *bufio.Reader) (wsHeader, error) {
	var h wsHeader
	var b [2]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return h, err
	}
	if b[0]&0x70 != 0 {
		return h, errors.New("websocket: reserved bits set (no extensions were negotiated)")
	}
	h.fin, h.opcode, h.masked = b[0]&0x80 != 0, b[0]&0x0f, b[1]&0x80 != 0
	h.length = uint64(b[1] & 0x7f)
	switch h.length {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return h, err
		}
		h.length = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return h, err
		}
		h.length = binary.BigEndian.Uint64(l[:])
	}
	if h.masked {
		if _, err := io.ReadFull(br, h.mask[:]); err != nil {
			return h, err
		}
	}
	return h, nil
}

// nextDataFrame reads frames until a data frame with payload starts, answering pings.
func (c *wsConn) nextDataFrame() error {
	for {
		h, err := readWSHeader(c.br)
		if err != nil {
			return err
		}
		if !h.masked {
			return errors.New("websocket: client frame not masked")
		}
		switch h.opcode {
		case wsOpCont, wsOpBinary:
			if h.length > wsMaxFrame {
				return fmt.Errorf("websocket: frame of %d bytes over limit %d", h.length, wsMaxFrame)
			}
			if h.length == 0 {
				continue
			}
			c.remaining, c.mask, c.maskPos = h.length, h.mask, 0
			return nil
		case wsOpText:
			return errors.New("websocket: text message; DERP uses binary messages")
		case wsOpClose, wsOpPing, wsOpPong:
			if h.length > wsMaxControl || !h.fin {
				return errors.New("websocket: invalid control frame")
			}
			payload := make([]byte, h.length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				return err
			}
			for i := range payload {
				payload[i] ^= h.mask[i&3]
			}
			switch h.opcode {
			case wsOpClose:
				c.writeFrame(wsOpClose, payload[:min(len(payload), 2)])
				return errWSClosed
			case wsOpPing:
				if err := c.writeFrame(wsOpPong, payload); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("websocket: unknown opcode %d", h.opcode)
		}
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.writeFrame(wsOpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	var hdr [10]byte
	hdr[0] = 0x80 | op
	n := 2
	switch {
	case len(p) < 126:
		hdr[1] = byte(len(p))
	case len(p) <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(len(p)))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(len(p)))
		n = 10
	}
	if _, err := c.Conn.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := c.Conn.Write(p)
	if op == wsOpClose {
		c.closed = true
	}
	return err
}
