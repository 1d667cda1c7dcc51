package netfilter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// tailscaleTable is tailscaled's routing table; it owns its contents and its rules at
	// priorities 5200-5299 (1300-1399 with mwan3): we only point more traffic at it.
	tailscaleTable = 52
	// bypassMark is the bit of tailscaled's mark for its own sockets (0x80000/0xff0000): our
	// rules match only packets without it ("fwmark 0/0x80000"), so tailscaled's own traffic is
	// never diverted. (An inverted rule would negate the destination match too.)
	bypassMark = 0x80000
)

var (
	tailnetV4 = netip.MustParsePrefix("100.64.0.0/10")
	tailnetV6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// wantRules lists the destinations the agent sends to table 52 at its own priority, ahead of
// policy-routing packages (mwan3, pbr): the tailnet ranges, plus the subnet routes tailscaled
// accepted from other routers (its unicast routes in table 52), except default routes (an exit
// node must not capture the LAN's traffic) and routes overlapping our own LAN prefixes.
func (r *Reconciler) wantRules() []netip.Prefix {
	want := []netip.Prefix{tailnetV4}
	if r.ipv6() {
		want = append(want, tailnetV6)
	}
	lan := r.lanPrefixes(false)
	for _, fam := range r.families() {
		routes, err := listRoutes(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			r.log.Warn("list table 52 routes", "err", err)
			continue
		}
		for _, rt := range routes {
			if rt.Table != tailscaleTable || rt.Type != unix.RTN_UNICAST || !rt.Dst.IsValid() {
				continue
			}
			p := rt.Dst.Masked()
			inTailnet := (tailnetV4.Overlaps(p) && tailnetV4.Bits() <= p.Bits()) ||
				(tailnetV6.Overlaps(p) && tailnetV6.Bits() <= p.Bits())
			if p.Bits() == 0 || inTailnet {
				continue // default routes (exit nodes) and tailnet hosts (covered already)
			}
			if slices.ContainsFunc(lan, p.Overlaps) || slices.Contains(want, p) {
				continue
			}
			want = append(want, p)
		}
	}
	return want
}

func (r *Reconciler) families() []int {
	if r.ipv6() {
		return []int{netlink.FAMILY_V4, netlink.FAMILY_V6}
	}
	return []int{netlink.FAMILY_V4}
}

func (r *Reconciler) ipv6() bool { return r.sysctlExists("net/ipv6/conf/all/forwarding") }

// newRule builds "to dst fwmark 0/0x80000 lookup 52 pref prio" from NewRule: a zero Rule{}
// would carry goto 0, flow 0 and suppress_prefixlength 0.
func newRule(dst netip.Prefix, prio int) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Priority = prio
	rule.Table = tailscaleTable
	rule.Family = netlink.FAMILY_V4
	if dst.Addr().Is6() {
		rule.Family = netlink.FAMILY_V6
	}
	rule.Dst = ipNet(dst)
	mask := uint32(bypassMark)
	rule.Mask = &mask // with Mark 0: the bypass bit must be clear
	return rule
}

// ownRules lists the rules at prio that point at table 52: those are the agent's (the
// priority is configured to be ours, and checked to stay out of tailscaled's range).
func (r *Reconciler) ownRules(prio int) ([]netlink.Rule, error) {
	var out []netlink.Rule
	for _, fam := range r.families() {
		f := netlink.NewRule()
		f.Priority = prio
		f.Table = tailscaleTable
		rules, err := netlink.RuleListFiltered(fam, f, netlink.RT_FILTER_PRIORITY|netlink.RT_FILTER_TABLE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list ip rules: %w", err)
		}
		out = append(out, rules...)
	}
	return out, nil
}

func isOurShape(rule netlink.Rule) bool {
	return !rule.Invert && rule.Mark == 0 && rule.Mask != nil && *rule.Mask == bypassMark &&
		rule.Src == nil && rule.IifName == "" && rule.OifName == "" && rule.Dst != nil
}

func (r *Reconciler) applyRules(st *state) error {
	prio := r.cfg.RulePriority
	if st.RulePriority != 0 && st.RulePriority != prio {
		if err := r.removeRules(st); err != nil {
			return err
		}
	}
	if st.RulePriority != prio {
		st.RulePriority = prio
		if err := st.save(r.stateDir); err != nil {
			return err
		}
	}
	have, err := r.ownRules(prio)
	if err != nil {
		return err
	}
	want := r.wantRules()
	var errs []error
	present := map[netip.Prefix]bool{}
	for _, rule := range have {
		p, ok := prefixOf(rule.Dst)
		if ok && isOurShape(rule) && slices.Contains(want, p) && !present[p] {
			present[p] = true
			continue
		}
		if err := netlink.RuleDel(&rule); err != nil {
			errs = append(errs, fmt.Errorf("delete stale ip rule %s: %w", rule, err))
			continue
		}
		r.log.Info("ip rule removed", "rule", rule.String())
	}
	for _, p := range want {
		if present[p] {
			continue
		}
		rule := newRule(p, prio)
		if err := netlink.RuleAdd(rule); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add ip rule to %s lookup %d pref %d: %w", p, tailscaleTable, prio, err))
			continue
		}
		r.log.Info("ip rule added", "to", p, "table", tailscaleTable, "pref", prio)
	}
	return errors.Join(errs...)
}

func (r *Reconciler) removeRules(st *state) error {
	if st.RulePriority == 0 {
		return nil
	}
	have, err := r.ownRules(st.RulePriority)
	if err != nil {
		return err
	}
	var errs []error
	for _, rule := range have {
		if err := netlink.RuleDel(&rule); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete ip rule %s: %w", rule, err))
			continue
		}
		r.log.Info("ip rule removed", "rule", rule.String())
	}
	if len(errs) == 0 {
		st.RulePriority = 0
	}
	return errors.Join(errs...)
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}
