package derp

// A connection's life: handshake and registration (accept), then the read loop (serve, or
// serveDetached, parked while idle, for connections that outlive their HTTP handler), then
// finish.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// HandleConn runs the DERP protocol on an upgraded connection until it ends. br must be the
// reader the upgrade was read through (it may hold pipelined ClientInfo bytes); bw carries
// the ServerKey frame (after any 101 response already buffered in it).
func (s *Server) HandleConn(ctx context.Context, nc net.Conn, br *bufio.Reader, bw *bufio.Writer, remote netip.AddrPort) error {
	c, err := s.accept(ctx, nc, br, bw, remote)
	if err != nil {
		return err
	}
	return c.serve(ctx)
}

// accept runs the handshake and registers the client; on error nc is closed.
func (s *Server) accept(ctx context.Context, nc net.Conn, br *bufio.Reader, bw *bufio.Writer, remote netip.AddrPort) (*sclient, error) {
	h, err := s.handshake(ctx, nc, br, bw, remote)
	if err != nil {
		s.stats.HandshakeFailures.Add(1) // before the close that the peer (and tests) see
		nc.Close()
		return nil, err
	}
	br, idle := smallReader(nc, br)
	c := s.newClient(nc, br, h, remote)
	c.idle, c.direct = idle, directSock(nc)
	// ServerInfo must be the first frame after ServerKey: until it is written, the sender
	// and direct writers of packets sent to the new client wait for the write lock.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := s.register(c); err != nil {
		nc.Close()
		return nil, err
	}
	noteAdmitted(nc)
	s.stats.Accepts.Add(1) // before ServerInfo, which the client may act on at once
	nc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	if err := writeServerInfo(bw, s.priv, h.key, c.serverInfo()); err != nil {
		s.unregister(c)
		nc.Close()
		return nil, fmt.Errorf("derp: %v: writing ServerInfo: %w", h.key, err)
	}
	nc.SetWriteDeadline(time.Time{})
	return c, nil
}

// serve runs an accepted client until its connection ends.
func (c *sclient) serve(ctx context.Context) error {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.nc.Close() })
		defer stop()
	}
	for {
		err := c.run(ctx)
		if err != errIdle {
			c.finish()
			return err
		}
		if err := c.idle.waitInPlace(); err != nil {
			c.finish()
			return c.ended(err)
		}
	}
}

// serveDetached is serve for a connection that outlives its caller (ServeHTTP). An idle
// reader parks the connection in the server's idle watch, which starts a new reader when
// data comes (idlewatch_linux.go); without epoll it hands the connection to a fresh
// goroutine that waits on a small stack (idleread.go). c.done gets the error that ended the
// connection.
func (c *sclient) serveDetached() {
	err := c.run(context.Background())
	if err == errIdle {
		if err = c.idle.clearDeadline(); err == nil {
			if !c.s.idleWatch.park(c) {
				go c.waitDetached()
			}
			return
		}
		err = c.ended(err)
	}
	c.finish()
	c.done(err)
}

// waitDetached waits for data in a goroutine of its own, where the idle watch cannot run.
func (c *sclient) waitDetached() {
	err := c.idle.waitInPlace()
	if err != nil {
		c.finish()
		c.done(c.ended(err))
		return
	}
	c.serveDetached()
}

// closeConn closes the connection from outside its reader. A reader parked in the idle
// watch has no goroutine to notice, so it is resumed to find the close.
func (c *sclient) closeConn() {
	c.nc.Close()
	c.s.idleWatch.resume(c)
}

// finish is the end of a connection whose reader stopped: nothing more is sent, and the
// client leaves the registry.
func (c *sclient) finish() {
	c.end()
	c.s.unregister(c)
	c.nc.Close()
}

func (s *Server) handshake(ctx context.Context, nc net.Conn, br *bufio.Reader, bw *bufio.Writer, remote netip.AddrPort) (hello, error) {
	nc.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	if err := writeServerKey(bw, s.pub); err != nil {
		return hello{}, fmt.Errorf("derp: writing ServerKey to %v: %w", remote, err)
	}
	h, err := readClientInfo(br, s.priv)
	if err != nil {
		return h, fmt.Errorf("derp: %v: %w", remote, err)
	}
	if !s.isMeshPeer(h) && s.opts.Verify != nil {
		if err := s.opts.Verify(ctx, h.key, remote.Addr().Unmap()); err != nil {
			s.stats.Rejected.Add(1)
			s.refusals.note(h.key, remote.Addr().Unmap(), err)
			return h, fmt.Errorf("derp: %v from %v refused: %w", h.key, remote.Addr(), err)
		}
	}
	nc.SetDeadline(time.Time{})
	return h, nil
}

func (s *Server) isMeshPeer(h hello) bool { return s.opts.MeshKey.equal(h.meshKey) }
