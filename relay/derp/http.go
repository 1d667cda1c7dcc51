package derp

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ServeHTTP upgrades a request on /derp to a DERP connection: "Upgrade: DERP" (or an old
// client's "Upgrade: websocket" without the derp subprotocol) speaks DERP on the raw
// connection, a real WebSocket with subprotocol "derp" carries it in binary messages.
// With "Derp-Fast-Start: 1" the client already knows our key from the meta cert and does
// not wait for a 101 response, so none is sent.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := strings.ToLower(r.Header.Get("Upgrade"))
	if up != "derp" && up != "websocket" {
		http.Error(w, "DERP requires connection upgrade", http.StatusUpgradeRequired)
		return
	}
	ws := up == "websocket" && hasToken(r.Header.Values("Sec-WebSocket-Protocol"), "derp")
	if ws && r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "missing Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	fastStart := !ws && r.Header.Get("Derp-Fast-Start") == "1"
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		s.log.Debug("derp: hijack failed", "err", err)
		return
	}
	remote := addrPort(nc.RemoteAddr())
	switch {
	case ws:
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: derp\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		if err := brw.Flush(); err != nil {
			nc.Close()
			return
		}
		s.stats.WebSocketAccepts.Add(1)
		wc := newWSConn(nc, brw.Reader)
		nc = wc
		brw = bufio.NewReadWriter(bufio.NewReaderSize(wc, 4096), bufio.NewWriterSize(wc, 4096))
	case fastStart:
		s.stats.FastStarts.Add(1)
	default:
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"+
			"Derp-Version: %d\r\nDerp-Public-Key: %s\r\n\r\n", ProtocolVersion, s.pub.HexString())
	}
	// The handshake runs here; the long-lived reader gets a fresh goroutine and this one
	// ends. That releases net/http's per-connection state, and the reader's stack is sized
	// by its own shallow read path, not by the TLS and NaCl handshakes that grew this one
	// (about 4 KiB less per idle client).
	c, err := s.accept(context.WithoutCancel(r.Context()), nc, brw.Reader, brw.Writer, remote)
	if err != nil {
		s.log.Debug("derp: handshake failed", "remote", remote.String(), "err", err)
		return
	}
	// The connection outlives the request: its contexts (never cancelled once hijacked)
	// would only keep net/http's per-connection state alive. Close ends every connection.
	c.done = func(err error) {
		if err != nil {
			s.log.Debug("derp: connection ended", "remote", remote.String(), "err", err)
		}
	}
	go c.serveDetached()
}

// Admittable is implemented by connections that a listener holds in its pool of
// unauthenticated connections (the relay's admission control). Once a client passed
// verification and is registered, the server calls Admitted on its connection (or on the
// connection under its TLS), which moves it to the authenticated clients: a slot that
// unauthenticated connections can never take.
type Admittable interface{ Admitted() }

func noteAdmitted(nc net.Conn) {
	for nc != nil {
		if a, ok := nc.(Admittable); ok {
			a.Admitted()
			return
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		nc = u.NetConn()
	}
}

// smallReader swaps net/http's 4 KiB reader for a small one once nothing is buffered in it:
// TLS already buffers whole records, so a few bytes suffice for frame headers and idle
// connections stay cheap. Over TLS it reads through an idleReader when it can (idleread.go).
func smallReader(nc net.Conn, br *bufio.Reader) (*bufio.Reader, *idleReader) {
	tc, ok := nc.(*tls.Conn)
	if !ok || br.Buffered() > 0 {
		return br, nil
	}
	if r := newIdleReader(tc); r != nil {
		return bufio.NewReaderSize(r, 64), r
	}
	return bufio.NewReaderSize(nc, 64), nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
