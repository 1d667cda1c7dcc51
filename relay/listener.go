package relay

import (
	"context"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// guardedListener applies admission control before TLS starts, so a connection storm
// costs an accept and a close, nothing more.
type guardedListener struct {
	net.Listener
	adm *admission
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ac := l.adm.admit(c); ac != nil {
			return ac, nil
		}
		c.Close()
	}
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
