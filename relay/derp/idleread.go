package derp

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle readers wait on a small stack. A reader blocked in tls.Conn.Read sits under crypto/tls's
// record layer, about 2.3 KB deep, so every idle client would hold a 4 KiB goroutine stack:
// the runtime shrinks a stack only when it uses under a quarter of it (counting an 800-byte
// guard), which a parked reader never does. The keepalive sweep interrupts the read of a
// client that sent nothing through a whole sweep (a read deadline in the past). Between
// frames the reader then hands the connection to a fresh goroutine that waits for the socket
// to become readable, a few hundred bytes deep, and ends; the waiter reads on when data comes.
//
// New goroutines start with the average stack the last collection saw (the runtime's
// adaptive start), so the first waiters, started while deep readers were the average, get
// 4 KiB. Once the waiters are the average, new goroutines get 2 KiB, and the sweep moves a
// waiter started on a larger stack to a fresh one. On 1,000 idle clients that is 2 MiB.
//
// Nothing is lost: crypto/tls treats a timeout as temporary and keeps a partial record, and
// the wait only peeks at the socket. The connections under the TLS layer (the relay's
// admission wrapper, then TCP) must hold no read data of their own once TLS runs, which is
// true of the relay's listener.

// errIdle ends the reader loop between frames when the sweep found the client idle, and a
// waiter's wait when the sweep moves it.
var errIdle = errors.New("derp: idle")

// pastDeadline interrupts a blocked read at once.
var pastDeadline = time.Unix(1, 0)

// idleReader is what a TLS client's frame reader reads from.
type idleReader struct {
	tc         *tls.Conn
	raw        syscall.RawConn
	atBoundary bool          // the reader is between frames, nothing of the next one read
	active     atomic.Bool   // a read returned since the last sweep
	waiting    atomic.Bool   // parked in waitReadable
	stack      atomic.Uint64 // the waiter's starting stack size; 0 when it is not a fresh waiter
}

// newIdleReader returns nil when no socket can be found under tc.
func newIdleReader(tc *tls.Conn) *idleReader {
	for nc := tc.NetConn(); nc != nil; {
		if sc, ok := nc.(syscall.Conn); ok {
			raw, err := sc.SyscallConn()
			if err != nil {
				return nil
			}
			return &idleReader{tc: tc, raw: raw}
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
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
// sweep, and the wait of a waiter started on a larger stack than new goroutines get now.
func (r *idleReader) sweep(stackStart uint64) {
	switch {
	case r.active.Swap(false):
	case !r.waiting.Load(), stackStart != 0 && r.stack.Load() > stackStart:
		r.tc.SetReadDeadline(pastDeadline)
	}
}

// stackStart reads the size new goroutines start with (0 if the runtime does not say).
func stackStart(s *[1]metrics.Sample) uint64 {
	s[0].Name = "/gc/stack/starting-size:bytes"
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
