package derp

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Direct writes. Below saturation most packets find their receiver's queue empty and its
// sender parked; handing the packet to that sender costs a wake-up and a second park per
// packet (about 2,000 instructions, a tenth of the relay's cost per packet). Instead, the
// sender's reader writes such a packet itself: it takes the receiver's write lock without
// waiting, and the socket under the receiver's TLS takes the record without blocking. What
// the socket does not take at once is kept and written by the receiver's sender before
// anything else, so a receiver that does not read never stalls the reader of anyone who
// sends to it. Busy receivers (a queue, a running sender, a write in progress) are served by
// their sender as before, so the order of a receiver's packets is kept.

// maxDirect is the largest packet written directly: what a non-blocking write leaves is kept
// in memory, so it stays small.
const maxDirect = 2048

// NewListener wraps l's connections so that the DERP server can write to them without
// blocking (direct writes). The relay puts it under its TLS listener.
func NewListener(l net.Listener) net.Listener { return &sockListener{l} }

type sockListener struct{ net.Listener }

func (l *sockListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newSockConn(nc), nil
}

// sockConn is an accepted connection under TLS that takes non-blocking writes.
type sockConn struct {
	net.Conn
	raw     syscall.RawConn // nil: every write blocks (no socket found)
	tryOnly atomic.Bool     // the direct writer's write: never block
	mu      sync.Mutex      // orders writes (TLS's own and ours) and guards pending
	pending []byte          // written before anything else
}

func newSockConn(nc net.Conn) *sockConn {
	c := &sockConn{Conn: nc}
	if sc, ok := under[syscall.Conn](nc); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c
}

// under finds the first connection of type T in nc and the connections it wraps.
func under[T any](nc net.Conn) (T, bool) {
	for nc != nil {
		if t, ok := nc.(T); ok {
			return t, true
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = u.NetConn()
	}
	var zero T
	return zero, false
}

// NetConn is the connection under the wrapper (the relay's admission wrapper finds itself).
func (c *sockConn) NetConn() net.Conn { return c.Conn }

func (c *sockConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tryOnly.Load() && c.raw != nil {
		n := 0
		if len(c.pending) == 0 {
			var err error
			if n, err = c.writeNow(p); err != nil {
				return n, err
			}
		}
		c.pending = append(c.pending, p[n:]...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// writeNow writes what the socket takes at once. It runs the write in Control, which does
// not look at the write deadline: a sender's deadline may have lapsed while it was idle.
func (c *sockConn) writeNow(p []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Control(func(fd uintptr) {
		for {
			n, werr = syscall.Write(int(fd), p)
			if werr != syscall.EINTR {
				break
			}
		}
	})
	if n < 0 {
		n = 0
	}
	if errors.Is(werr, syscall.EAGAIN) {
		werr = nil
	}
	if err == nil {
		err = werr
	}
	return n, err
}

// hasPending reports whether a direct write left bytes to write.
func (c *sockConn) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// flush writes what direct writes left (blocking, under the sender's write deadline).
func (c *sockConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *sockConn) flushLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	if cap(c.pending) > 2*maxDirect {
		c.pending = nil
	} else {
		c.pending = c.pending[:0]
	}
	return err
}

// directSock finds the sockConn under a client's connection, if any.
func directSock(nc net.Conn) *sockConn {
	if sc, ok := under[*sockConn](nc); ok && sc.raw != nil {
		return sc
	}
	return nil
}

// tryDirectLocked writes p to c from the caller's goroutine when c is idle: nothing queued,
// no sender writing, no direct write in progress. It reports whether it took p; c.mu is
// held on entry and released when it returns true.
func (c *sclient) tryDirectLocked(p packet) bool {
	if c.direct == nil || p.len() > maxDirect || c.flushDue || c.data.len() > 0 || c.disco.len() > 0 ||
		c.sending && !c.parked || !c.wmu.TryLock() {
		return false
	}
	newSrc := c.noteSrcLocked(p.src)
	c.mu.Unlock()
	if newSrc {
		c.s.notePeerSend(p.src, c)
	}
	c.direct.tryOnly.Store(true)
	_, err := c.nc.Write(p.recvFrame())
	c.direct.tryOnly.Store(false)
	left := c.direct.hasPending()
	c.wmu.Unlock()
	st := &c.s.stats
	if err != nil {
		st.drop(dropWriteError, p.len())
		c.closeConn() // ends the reader
	} else {
		st.PacketsSent.Add(1)
		st.DirectWrites.Add(1)
		st.BytesSent.Add(int64(p.len()))
	}
	p.release()
	if left {
		st.DirectLeftovers.Add(1)
		c.mu.Lock()
		c.flushDue = true
		c.startSenderLocked()
		c.mu.Unlock()
	}
	return true
}

// moveWriteDeadline sets the write deadline when less than three quarters of the timeout is
// left, not for each write (each move is a runtime timer update): a stuck write fails after
// between three quarters and all of the timeout. c.wmu is held.
func (c *sclient) moveWriteDeadline() {
	timeout := c.s.opts.WriteTimeout
	if c.canMesh {
		timeout = meshWriteTimeout
	}
	if now := time.Now(); c.wdeadline.Sub(now) < timeout*3/4 {
		c.wdeadline = now.Add(timeout)
		c.nc.SetWriteDeadline(c.wdeadline)
	}
}
