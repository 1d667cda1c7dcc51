package ddns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netWatcher turns kernel address and link events into kicks for the updater. It never
// decides anything itself: the updater recomputes from a full snapshot on each kick, so a
// lost or coalesced event cannot leave a stale address behind.
type netWatcher struct {
	log *slog.Logger
}

// WatchNet sends a non-blocking kick on kick for each kernel address or link event (and one
// after each (re)subscription) until ctx ends: for parts other than the updater that follow
// this box's addresses.
func WatchNet(ctx context.Context, log *slog.Logger, kick chan<- time.Time) {
	(&netWatcher{log: log}).run(ctx, kick)
}

// run subscribes to address and link events and sends a non-blocking kick for each, with the
// time the event arrived. A subscription ends on any receive error (the kernel drops events
// when the socket buffer overflows), so it is re-established with backoff and followed by a
// kick that forces a resync.
func (w *netWatcher) run(ctx context.Context, kick chan<- time.Time) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := w.subscribeOnce(ctx, kick)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("netlink subscription ended, resubscribing", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

func (w *netWatcher) subscribeOnce(ctx context.Context, kick chan<- time.Time) error {
	done := make(chan struct{})
	defer close(done)
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	errc := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{
		ListExisting: true, ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return fmt.Errorf("address subscription: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{
		ErrorCallback: onErr, ReceiveBufferSize: 1 << 20,
	}); err != nil {
		return fmt.Errorf("link subscription: %w", err)
	}
	send(kick, time.Now()) // resync after (re)subscribing
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-addrs:
			if !ok {
				return errors.Join(errors.New("address events channel closed"), drain(errc))
			}
			send(kick, time.Now())
		case _, ok := <-links:
			if !ok {
				return errors.Join(errors.New("link events channel closed"), drain(errc))
			}
			send(kick, time.Now())
		}
	}
}

func drain(errc chan error) error {
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// send delivers t unless a kick is already pending; the pending one carries the earlier
// event time, which is the one latency is measured from.
func send(kick chan<- time.Time, t time.Time) {
	select {
	case kick <- t:
	default:
	}
}

// interfaceAddrs returns the addresses on the named interface with their kernel flags.
func interfaceAddrs(name string, family int) ([]Candidate, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	var list []netlink.Addr
	for try := 0; ; try++ {
		list, err = netlink.AddrList(link, family)
		// A dump interrupted by a concurrent change may be inconsistent: read it again.
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < 5 {
			continue
		}
		break
	}
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("interface %s is down", name)
	}
	out := make([]Candidate, 0, len(list))
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		c := Candidate{Addr: ip.Unmap(), Flags: a.Flags, Scope: a.Scope, PreferredLft: a.PreferedLft, ValidLft: a.ValidLft}
		if a.IPNet != nil {
			c.PrefixLen, _ = a.IPNet.Mask.Size()
		}
		out = append(out, c)
	}
	return out, nil
}

func familyOf(typ string) int {
	if typ == "A" {
		return unix.AF_INET
	}
	return unix.AF_INET6
}
