package netfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/edgerelay/edgerelay/agent/localapi"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lanPrefixes returns the prefixes of the LAN interfaces' addresses. With advertise set it
// keeps what a subnet router should announce: IPv4 prefixes (not link-local) and global IPv6
// prefixes (2000::/3) that are neither deprecated nor tentative, so a renumbered prefix drops
// out as soon as the kernel deprecates the old one. Without it, it returns every prefix.
func (r *Reconciler) lanPrefixes(advertise bool) []netip.Prefix {
	var out []netip.Prefix
	for _, name := range r.cfg.LANInterfaces {
		link, err := netlink.LinkByName(name)
		if err != nil {
			continue // not there (yet): the next link event brings it
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			r.log.Warn("list addresses", "interface", name, "err", err)
			continue
		}
		for _, a := range addrs {
			p, ok := prefixOf(a.IPNet)
			if !ok {
				continue
			}
			if advertise {
				if a.Flags&(unix.IFA_F_DEPRECATED|unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
					continue
				}
				ip := a.IP
				if p.Addr().Is4() && ip.IsLinkLocalUnicast() {
					continue
				}
				if p.Addr().Is6() && !globalV6.Contains(p.Addr()) {
					continue
				}
				if p.Bits() == p.Addr().BitLen() {
					continue // a host address (DHCPv6 /128, point-to-point /32) routes nothing
				}
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// globalV6 holds the IPv6 LAN prefixes worth advertising (link-local and ULA ones stay on
// the LAN). This is not the public-address rule of ddns.IsPublic, on purpose: a subnet
// router advertises its private IPv4 LANs, the very prefixes that rule rejects.
var globalV6 = netip.MustParsePrefix("2000::/3")

// wantRoutes is what the agent advertises: the configured CIDRs, with "auto" standing for the
// LAN prefixes.
func (r *Reconciler) wantRoutes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range r.cfg.Routes {
		if s == "auto" {
			for _, p := range r.lanPrefixes(true) {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil && !slices.Contains(out, p.Masked()) {
			out = append(out, p.Masked())
		}
	}
	sortPrefixes(out)
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	// sort.Slice, not slices.SortFunc: a generic sort per element type costs ~12 KB of code.
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

// mergeRoutes computes the new list from tailscaled's current one: drop what the agent added
// before (ours), add what it wants now, keep everything else (exit-node routes, routes the
// user added). It returns the new list and the routes now owned by the agent: a wanted route
// that was already there and not ours stays the user's.
func mergeRoutes(current, ours, want []netip.Prefix) (next, owned []netip.Prefix) {
	for _, p := range current {
		if !slices.Contains(ours, p) || slices.Contains(want, p) {
			if !slices.Contains(next, p) {
				next = append(next, p)
			}
		}
	}
	for _, p := range want {
		if slices.Contains(ours, p) || !slices.Contains(current, p) {
			owned = append(owned, p)
		}
		if !slices.Contains(next, p) {
			next = append(next, p)
		}
	}
	sortPrefixes(next)
	sortPrefixes(owned)
	return next, owned
}

func sameSet(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// applyAdvertise sets the wanted routes on tailscaled, withdrawing the agent's stale ones
// (an old IPv6 prefix after the ISP changed it).
func (r *Reconciler) applyAdvertise(ctx context.Context, st *state) error {
	want := r.wantRoutes()
	api := newLocalAPI(r.cfg.TailscaledSocket)
	p, err := api.Prefs(ctx)
	if err != nil {
		return err
	}
	ours := parsePrefixes(st.Advertised)
	next, owned := mergeRoutes(p.AdvertiseRoutes, ours, want)
	if !sameSet(next, p.AdvertiseRoutes) {
		if _, err := api.EditPrefs(ctx, localapi.Edit{AdvertiseRoutesSet: true, AdvertiseRoutes: next}); err != nil {
			return err
		}
		r.log.Info("advertised routes set on tailscaled", "routes", prefixStrings(next), "ours", prefixStrings(owned))
	}
	st.Advertised = prefixStrings(owned)
	st.TailscaledSocket = r.cfg.TailscaledSocket
	if err := st.save(r.stateDir); err != nil {
		return err
	}
	if r.cfg.Headscale != nil && r.cfg.Headscale.URL != "" {
		if err := r.approveRoutes(ctx, api, st, want); err != nil {
			return err
		}
	}
	return nil
}

// removeAdvertise withdraws the routes the agent added, keeping everyone else's.
func (r *Reconciler) removeAdvertise(ctx context.Context, st *state) error {
	if len(st.Advertised) == 0 && len(st.Approved) == 0 {
		return nil
	}
	socket := st.TailscaledSocket
	if socket == "" {
		socket = r.cfg.TailscaledSocket
	}
	api := newLocalAPI(socket)
	ours := parsePrefixes(st.Advertised)
	if len(ours) > 0 {
		p, err := api.Prefs(ctx)
		if err != nil {
			return err
		}
		next, _ := mergeRoutes(p.AdvertiseRoutes, ours, nil)
		if !sameSet(next, p.AdvertiseRoutes) {
			if _, err := api.EditPrefs(ctx, localapi.Edit{AdvertiseRoutesSet: true, AdvertiseRoutes: next}); err != nil {
				return err
			}
			r.log.Info("advertised routes withdrawn from tailscaled", "routes", st.Advertised)
		}
		st.Advertised = nil
	}
	if len(st.Approved) > 0 && r.cfg.Headscale != nil && r.cfg.Headscale.URL != "" {
		if err := r.approveRoutes(ctx, api, st, nil); err != nil {
			return fmt.Errorf("withdraw headscale approval: %w", err)
		}
	}
	return nil
}

func (r *Reconciler) showAdvertise(ctx context.Context, st *state) []Item {
	var items []Item
	want := r.wantRoutes()
	p, err := newLocalAPI(r.cfg.TailscaledSocket).Prefs(ctx)
	for _, w := range want {
		it := Item{Kind: "route", Name: "advertise " + w.String(), Want: "advertised"}
		switch {
		case err != nil:
			it.Have = "unknown: " + err.Error()
		case slices.Contains(p.AdvertiseRoutes, w):
			it.Have, it.InPlace = "advertised", true
		default:
			it.Have = "not advertised"
		}
		items = append(items, it)
	}
	for _, o := range parsePrefixes(st.Advertised) {
		if slices.Contains(want, o) {
			continue
		}
		it := Item{Kind: "route", Name: "advertise " + o.String(), Want: "withdrawn"}
		switch {
		case err != nil:
			it.Have = "unknown: " + err.Error()
		case slices.Contains(p.AdvertiseRoutes, o):
			it.Have = "still advertised"
		default:
			it.Have, it.InPlace = "withdrawn", true
		}
		items = append(items, it)
	}
	return items
}
