package netfilter

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/agent/localapi"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Timing of the reconcile loop: events come in bursts (an interface coming up brings link,
// address and route messages, RA refreshes repeat), so wait for quiet before applying.
const (
	debounce     = 1500 * time.Millisecond
	resyncEvery  = 10 * time.Minute
	retryInitial = 5 * time.Second
	retryMax     = 5 * time.Minute
)

// Run applies the config now, then again whenever the involved interfaces change (link or
// address events on the LAN or tailscale interfaces, tailscaled's table 52 routes) or
// tailscaled's AdvertiseRoutes change (another tool's `tailscale up` dropped them), with
// debounce, retrying failures with backoff, until ctx ends. After each apply it publishes
// what is in place (WithReports). It does not remove anything on exit: forwarding must
// survive an agent restart.
func (r *Reconciler) Run(ctx context.Context) error {
	events := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.watch(ctx, events) })
	following := !r.advertise // tailscaled's prefs are followed from the first good apply on

	timer := time.NewTimer(0) // apply at once on start
	defer timer.Stop()
	retry := retryInitial
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			timer.Reset(debounce)
		case <-timer.C:
			err := r.Apply(ctx)
			if ctx.Err() != nil {
				return nil
			}
			r.publish(ctx, err)
			if err != nil {
				r.log.Error("subnet apply failed; will retry", "err", err, "retry_in", retry)
				timer.Reset(retry)
				retry = min(retry*2, retryMax)
				continue
			}
			r.log.Debug("subnet in place")
			if !following {
				following = true
				wg.Go(func() { r.followPrefs(ctx, events) })
			}
			retry = retryInitial
			timer.Reset(resyncEvery)
		}
	}
}

// watch subscribes to netlink link, address and route events and signals relevant ones,
// resubscribing when a subscription breaks (the library closes the channel on overflow).
func (r *Reconciler) watch(ctx context.Context, events chan<- struct{}) {
	names := append([]string{r.cfg.TailscaleInterface}, r.cfg.LANInterfaces...)
	signal := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		done := make(chan struct{})
		links := make(chan netlink.LinkUpdate, 64)
		addrs := make(chan netlink.AddrUpdate, 64)
		errCb := func(err error) { r.log.Debug("netlink subscription", "err", err) }
		err1 := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: errCb})
		err2 := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: errCb})
		routes, err3 := subscribeRoutes(done, errCb)
		if err := errors.Join(err1, err2, err3); err != nil {
			close(done)
			r.log.Warn("netlink subscribe failed; retrying (periodic resync meanwhile)", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
			continue
		}
		signal() // events may have been missed while (re)subscribing
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case u, ok := <-links:
				if !ok {
					break loop
				}
				if slices.Contains(names, u.Attrs().Name) {
					signal()
				}
			case u, ok := <-addrs:
				if !ok {
					break loop
				}
				if l, err := netlink.LinkByIndex(u.LinkIndex); err != nil || slices.Contains(names, l.Attrs().Name) {
					signal()
				}
			case u, ok := <-routes:
				if !ok {
					break loop
				}
				if u.Table == tailscaleTable && u.Type == unix.RTN_UNICAST {
					signal()
				}
			}
		}
		close(done)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// WithReports has Run publish, after every apply, what is in place (Show's report) and the
// apply's error, for a status that never waits on the reconciler or runs a command. f must
// return quickly.
func WithReports(f func(Report, error)) Option { return func(r *Reconciler) { r.reports = f } }

func (r *Reconciler) publish(ctx context.Context, applyErr error) {
	if r.reports == nil {
		return
	}
	rep, err := r.Show(ctx)
	if err != nil {
		applyErr = errors.Join(applyErr, err)
	}
	r.reports(rep, applyErr)
}

// followPrefs signals events when tailscaled's AdvertiseRoutes change, and at each new watch
// of its IPN bus (tailscaled started or restarted): a `tailscale up` without
// --advertise-routes, from a user, an init script or a LuCI app, silently drops the routes,
// and the apply that follows puts ours back.
func (r *Reconciler) followPrefs(ctx context.Context, events chan<- struct{}) {
	var last []netip.Prefix
	fresh := true
	newLocalAPI(r.cfg.TailscaledSocket).FollowPrefs(ctx, func(p localapi.Prefs, err error) {
		if err != nil {
			fresh = true
			r.log.Debug("tailscaled IPN bus", "err", err)
			return
		}
		if fresh || !sameSet(last, p.AdvertiseRoutes) {
			select {
			case events <- struct{}{}:
			default:
			}
		}
		fresh, last = false, p.AdvertiseRoutes
	})
}
