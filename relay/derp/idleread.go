package derp

import (
	"crypto/tls"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle readers give up their goroutine. A reader blocked in tls.Conn.Read sits under
// crypto/tls's record layer, about 2.3 KB deep, so every idle client would hold a 4 KiB
// goroutine stack: the runtime shrinks a stack only when it uses under a quarter of it
// (counting an 800-byte guard), which a parked reader never does. The keepalive sweep
// interrupts the read of a client that sent nothing through a whole sweep (a read deadline
// in the past). Between frames the reader then parks the connection in the server's idle
// watch and its goroutine ends (idlewatch_linux.go); without epoll it hands the connection to
// a fresh goroutine that waits for the socket to become readable, a few hundred bytes deep.
// Either way a new reader starts when data comes.
//
// Nothing is lost: crypto/tls treats a timeout as temporary and keeps a partial record, and
// the wait only peeks at the socket. The connections under the TLS layer (the relay's
// admission wrapper, then TCP) must hold no read data of their own once TLS runs, which is
// true of the relay's listener.

// errIdle ends the reader loop between frames when the sweep found the client idle.
var errIdle = errors.New("derp: idle")

// pastDeadline interrupts a blocked read at once.
var pastDeadline = time.Unix(1, 0)

// idleReader is what a TLS client's frame reader reads from.
type idleReader struct {
	tc         *tls.Conn
	raw        syscall.RawConn
	atBoundary bool        // the reader is between frames, nothing of the next one read
	active     atomic.Bool // a read returned since the last sweep
	waiting    atomic.Bool // blocked in waitReadable
	parked     atomic.Bool // in the server's idle watch, no goroutine (idlewatch_linux.go)
}

// newIdleReader returns nil when no socket can be found under tc.
func newIdleReader(tc *tls.Conn) *idleReader {
	sc, ok := under[syscall.Conn](tc.NetConn())
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &idleReader{tc: tc, raw: raw}
}

// Read reads from the TLS connection. Interrupted by the sweep, it returns errIdle between
// frames and otherwise (a client idle in mid-frame) waits where it is.
func (r *idleReader) Read(p []byte) (int, error) {
	for {
		n, err := r.tc.Read(p)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			r.atBoundary = false
			if !r.active.Load() {
				r.active.Store(true)
			}
			return n, err
		}
		if r.atBoundary {
			return 0, errIdle
		}
		if err := r.waitInPlace(); err != nil {
			return 0, err
		}
	}
}

// waitInPlace waits for data on the caller's goroutine, whatever the sweep does meanwhile.
func (r *idleReader) waitInPlace() error {
	for {
		err := r.clearDeadline()
		if err == nil {
			err = r.waitReadable()
		}
		if err != errIdle {
			return err
		}
	}
}

func (r *idleReader) clearDeadline() error { return r.tc.SetReadDeadline(time.Time{}) }

// waitReadable parks until the socket has data, an error or an end (nil, or the error), or
// until a deadline interrupts it (errIdle, the deadline still set). It runs on a small stack,
// so it clears no deadline itself: the timer code would grow the stack.
func (r *idleReader) waitReadable() error {
	r.waiting.Store(true)
	defer r.waiting.Store(false)
	err := r.raw.Read(r.readable)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errIdle
	}
	return err
}

// readable is waitReadable's test: a byte, an end or an error is waiting on the socket.
func (r *idleReader) readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EINTR
}

// sweep runs on the keepalive sweep: it interrupts a read that got nothing since the last
// sweep.
func (r *idleReader) sweep() {
	if !r.active.Swap(false) && !r.parked.Load() && !r.waiting.Load() {
		r.tc.SetReadDeadline(pastDeadline)
	}
}
