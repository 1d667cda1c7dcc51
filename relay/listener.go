package relay

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/edgerelay/relay/ratelimit"
)

// ListenerStats count what the listener guard let in and turned away.
type ListenerStats struct {
	Accepted     atomic.Int64
	RejectedRate atomic.Int64 // over the accept rate
	RejectedFull atomic.Int64 // over max_clients
	Open         atomic.Int64 // TCP connections open now
}

// guardedListener applies the accept rate and the client cap before TLS starts, so a
// connection storm costs an accept and a close, nothing more.
type guardedListener struct {
	net.Listener
	accept *ratelimit.Bucket
	max    int64
	stats  *ListenerStats
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		switch {
		case !l.accept.Allow(1):
			l.stats.RejectedRate.Add(1)
			c.Close()
		case l.max > 0 && l.stats.Open.Load() >= l.max:
			l.stats.RejectedFull.Add(1)
			c.Close()
		default:
			l.stats.Accepted.Add(1)
			l.stats.Open.Add(1)
			return &countedConn{Conn: c, open: &l.stats.Open}, nil
		}
	}
}

// countedConn gives its slot back when closed (once, however often Close is called).
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// listenTCP binds addr with TCP keepalive and TCP_USER_TIMEOUT (inherited by accepted
// sockets), so dead peers are reaped without waiting for the keepalive.
func listenTCP(ctx context.Context, addr string, keepAlive, userTimeout time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAlive, Interval: keepAlive / 10, Count: 3},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return lc.Listen(ctx, "tcp", addr)
}
