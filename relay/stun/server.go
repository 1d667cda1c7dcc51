package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the server's counters, named after derper's: requests by
// disposition and answered requests by address family.
type Stats struct {
	Success    uint64 // answered
	NotSTUN    uint64 // dropped: not a well-formed Binding Request
	BadSource  uint64 // dropped: well-formed, but from port 0 or an unanswerable address
	ReadError  uint64 // socket read failed
	WriteError uint64 // answer could not be sent
	IPv4       uint64 // well-formed requests from IPv4 clients (incl. IPv4-mapped)
	IPv6       uint64 // well-formed requests from IPv6 clients
}

// Server answers STUN Binding Requests on one UDP socket.
type Server struct {
	conn *net.UDPConn
	log  *slog.Logger

	serving   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	success, notSTUN, badSource, readErr, writeErr, ipv4, ipv6 atomic.Uint64

	// One buffer each way, owned by the Serve goroutine. 64 KiB holds any
	// UDP datagram, so a request is never silently truncated into looking
	// valid.
	rbuf [64 << 10]byte
	wbuf [maxResponseLen]byte
}

// Listen binds a UDP socket on addr (host:port). With an empty host it binds
// the dual-stack wildcard, so IPv4 and IPv6 clients share one socket. A nil
// log discards log output.
func Listen(addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("stun: listen address %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("stun: bind %q: %w", addr, err)
	}
	s := &Server{conn: conn, log: log.With("component", "stun")}
	s.log.Info("STUN server listening", "addr", conn.LocalAddr().String())
	return s, nil
}

// Addr is the bound local address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Success:    s.success.Load(),
		NotSTUN:    s.notSTUN.Load(),
		BadSource:  s.badSource.Load(),
		ReadError:  s.readErr.Load(),
		WriteError: s.writeErr.Load(),
		IPv4:       s.ipv4.Load(),
		IPv6:       s.ipv6.Load(),
	}
}

// Close releases the socket. Serve does this itself when its context ends;
// Close is for a Server that was never served.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.conn.Close() })
	return s.closeErr
}

// Serve answers requests until ctx ends, then closes the socket and returns
// nil. It may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("stun: Serve called twice")
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.Close()

	backoff := time.Duration(0)
	for {
		if err := s.readAndHandle(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return errors.New("stun: socket closed while serving")
			}
			s.readErr.Add(1)
			// Back off so a persistent error neither spins nor floods the log.
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			s.log.Warn("STUN read failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
	}
}

// readAndHandle reads one datagram and answers it. It is the whole per-packet
// path and must not allocate.
func (s *Server) readAndHandle() error {
	n, src, err := s.conn.ReadFromUDPAddrPort(s.rbuf[:])
	if err != nil {
		return err
	}
	s.handle(s.rbuf[:n], src)
	return nil
}

// handle answers one datagram. It must not allocate.
func (s *Server) handle(pkt []byte, src netip.AddrPort) {
	tx, err := parseBindingRequest(pkt)
	if err != nil {
		s.notSTUN.Add(1)
		return
	}
	ip := src.Addr().Unmap()
	if ip.Is4() {
		s.ipv4.Add(1)
	} else {
		s.ipv6.Add(1)
	}
	if src.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
		s.badSource.Add(1)
		return
	}
	n := appendResponse(s.wbuf[:], tx, src)
	// Reply to src as received (mapped form on a dual-stack socket).
	if _, err := s.conn.WriteToUDPAddrPort(s.wbuf[:n], src); err != nil {
		s.writeErr.Add(1)
		return
	}
	s.success.Add(1)
}
