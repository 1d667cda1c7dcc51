package ddns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// resolve returns the address a record's source offers now. ok is false when the source
// could not be read (the previous selection then stands).
func (u *Updater) resolve(ctx context.Context, r *record) (netip.Addr, bool) {
	switch {
	case r.fixed.IsValid():
		return r.fixed, true
	case r.cfg.URL != "":
		cctx, cancel := context.WithTimeout(ctx, u.timing.APITimeout)
		defer cancel()
		a, err := fetchEcho(cctx, echoClient(r.cfg.Type, u.hc), r.cfg.URL)
		if err == nil {
			if why := publicReason(r.cfg.Type, a); why != "" {
				err = fmt.Errorf("echo service reported %s, which is %s", a, why)
			}
		}
		if err != nil {
			u.explain(r, fmt.Sprintf("cannot learn the address from %s: %v", r.cfg.URL, err))
			return netip.Addr{}, false
		}
		u.explain(r, "")
		return a, true
	case r.cfg.STUN != "":
		return u.resolveSTUN(ctx, r)
	}
	cands, err := interfaceAddrs(r.cfg.Interface, familyOf(r.cfg.Type))
	if err != nil {
		u.explain(r, err.Error()+"; keeping the record as it is")
		return netip.Addr{}, true
	}
	// A LAN host's record follows the interface's address; the last one chosen is kept
	// while it stays eligible, so the record does not flap.
	current := r.selected
	if r.iid.IsValid() {
		current = r.base
	}
	a, rejected := Select(r.cfg.Type, cands, current)
	if !a.IsValid() {
		u.explain(r, noAddressMessage(r, rejected))
		return netip.Addr{}, true
	}
	u.explain(r, "")
	if r.iid.IsValid() {
		r.base = a
		return hostAddr(a, prefixLen(cands, a), r.iid), true
	}
	return a, true
}

// resolveSTUN asks the record's STUN servers (all at once for stun: auto) for this line's
// mapped address; the first public answer wins.
func (u *Updater) resolveSTUN(ctx context.Context, r *record) (netip.Addr, bool) {
	servers := []string{r.cfg.STUN}
	if r.cfg.STUN == STUNAuto {
		servers = u.meshSTUN
	}
	if len(servers) == 0 {
		u.explain(r, "cannot learn the address by STUN: no server to ask (stun: auto and no relay.mesh.peers)")
		return netip.Addr{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, u.timing.STUNTimeout)
	var wg sync.WaitGroup
	defer wg.Wait() // the other servers' questions end with ctx: nothing outlives this call
	defer cancel()
	type answer struct {
		srv  string
		addr netip.Addr
		err  error
	}
	answers := make(chan answer, len(servers))
	for _, srv := range servers {
		wg.Go(func() {
			a, err := askSTUN(ctx, stunNetwork(r.cfg.Type), withDefaultPort(srv, "3478"))
			if err == nil {
				if why := publicReason(r.cfg.Type, a); why != "" {
					err = fmt.Errorf("it reported %s, which is %s (is the server inside this network?)", a, why)
				}
			}
			answers <- answer{srv, a, err}
		})
	}
	var errs []string
	for range servers {
		a := <-answers
		if a.err == nil {
			u.explain(r, "")
			return a.addr, true
		}
		errs = append(errs, a.srv+": "+a.err.Error())
	}
	u.explain(r, "cannot learn the address by STUN: "+strings.Join(errs, "; "))
	return netip.Addr{}, false
}

// noAddressMessage says why an interface offers nothing to publish, calling out the common
// case of a WAN behind carrier-grade NAT or a private network.
func noAddressMessage(r *record, rejected []Rejection) string {
	if len(rejected) == 0 {
		return fmt.Sprintf("interface %s has no %s address; keeping the record as it is", r.cfg.Interface, familyName(r.cfg.Type))
	}
	parts := make([]string, 0, len(rejected))
	natted := false
	for _, x := range rejected {
		parts = append(parts, x.Addr.String()+" ("+x.Reason+")")
		natted = natted || strings.Contains(x.Reason, "NAT") || strings.Contains(x.Reason, "private")
	}
	msg := fmt.Sprintf("interface %s has no publishable %s address: %s; keeping the record as it is",
		r.cfg.Interface, r.cfg.Type, strings.Join(parts, ", "))
	if r.cfg.Type == "A" && natted {
		msg += ". The WAN has no public IPv4 (CGNAT or private network): DERP clients will need IPv6, or, if a modem in front of this box holds a public IPv4 and forwards it here, use stun: (a STUN server) or url: (an echo service)"
	}
	return msg
}

// explain logs msg when it differs from the last one for r, so a persisting condition is
// reported once, not on every event.
func (u *Updater) explain(r *record, msg string) {
	if msg == r.rejectMsg {
		return
	}
	r.rejectMsg = msg
	if msg != "" {
		u.log.Warn(msg, "record", r.fqdn, "type", r.cfg.Type)
	}
}
