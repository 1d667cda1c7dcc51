package ddns

import (
	"cmp"
	"net/netip"
	"slices"
)

// Kernel address flags (IFA_F_*, linux/if_addr.h). Spelled out here so the selection rules
// stay a pure function that tests and fuzzing can drive without netlink.
const (
	flagTemporary     = 0x01 // IPv6 privacy address (IFA_F_SECONDARY for IPv4)
	flagOptimistic    = 0x04
	flagDADFailed     = 0x08
	flagDeprecated    = 0x20
	flagTentative     = 0x40
	flagPermanent     = 0x80
	flagManageTemp    = 0x100
	flagNoPrefixRoute = 0x200
	flagStablePrivacy = 0x800
)

// lifetimeForever is the kernel's "infinite" lifetime (0xFFFFFFFF) as netlink reports it.
const lifetimeForever = 0xFFFFFFFF

// Candidate is one address found on an interface, with what the kernel says about it.
type Candidate struct {
	Addr         netip.Addr
	Flags        int
	Scope        int // 0 = global (RT_SCOPE_UNIVERSE)
	PreferredLft int // seconds; lifetimeForever = never expires; 0 = deprecated
	ValidLft     int
	PrefixLen    int // the address's prefix length on the interface (0: unknown)
}

// Rejection says why a candidate was not eligible.
type Rejection struct {
	Addr   netip.Addr
	Reason string
}

// publicReason returns "" when addr may be published for a record of type typ (A or AAAA),
// or why it may not: the public-address rule (public.go) for the record's family. It applies
// to every address source except a fixed value.
func publicReason(typ string, a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "no address"
	case typ == "A" && !a.Is4() && !a.Is4In6():
		return "not IPv4"
	case typ != "A" && (!a.Is6() || a.Is4In6()):
		return "not IPv6"
	}
	return PublicReason(a)
}

// eligible returns "" when c may be published for typ, or why not.
func eligible(typ string, c Candidate) string {
	if r := publicReason(typ, c.Addr); r != "" {
		return r
	}
	if c.Scope != 0 {
		return "not global scope"
	}
	if typ == "A" {
		return ""
	}
	switch {
	case c.Flags&flagTemporary != 0:
		return "temporary (privacy) address"
	case c.Flags&flagDADFailed != 0:
		return "duplicate address detection failed"
	case c.Flags&(flagTentative|flagOptimistic) != 0:
		return "tentative (duplicate address detection running)"
	case c.Flags&flagDeprecated != 0 || c.PreferredLft == 0:
		return "deprecated"
	}
	return ""
}

// stability ranks how long an IPv6 address is expected to stay: static first, then a
// DHCPv6-assigned address, then a stable SLAAC address, then anything else.
func stability(c Candidate) int {
	switch {
	case c.Flags&flagPermanent != 0:
		return 3
	case c.Flags&flagNoPrefixRoute != 0:
		return 2
	case c.Flags&(flagManageTemp|flagStablePrivacy) != 0 || isEUI64(c.Addr):
		return 1
	}
	return 0
}

// isEUI64 recognizes a modified EUI-64 interface identifier (ff:fe in the middle).
func isEUI64(a netip.Addr) bool {
	b := a.As16()
	return b[11] == 0xff && b[12] == 0xfe
}

// preferred returns the preferred lifetime as a comparable number (forever is largest).
func preferred(c Candidate) int64 {
	if c.PreferredLft < 0 || uint32(c.PreferredLft) == lifetimeForever {
		return 1 << 40
	}
	return int64(c.PreferredLft)
}

// Select picks the address to publish for a record of type typ (A or AAAA) from cands.
// The current address is kept while it stays eligible, so the record does not flap; otherwise
// the most stable eligible address wins, then the one with the longest preferred lifetime
// (the newest prefix after a redial), then the lowest for determinism. The rejections say
// why every other address was left out.
func Select(typ string, cands []Candidate, current netip.Addr) (netip.Addr, []Rejection) {
	var ok []Candidate
	var rejected []Rejection
	for _, c := range cands {
		c.Addr = c.Addr.Unmap()
		if r := eligible(typ, c); r != "" {
			rejected = append(rejected, Rejection{Addr: c.Addr, Reason: r})
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		return netip.Addr{}, rejected
	}
	if current.IsValid() {
		for _, c := range ok {
			if c.Addr == current {
				return current, rejected
			}
		}
	}
	best := slices.MinFunc(ok, func(a, b Candidate) int {
		if typ == "AAAA" {
			if d := cmp.Compare(stability(b), stability(a)); d != 0 {
				return d
			}
			if d := cmp.Compare(preferred(b), preferred(a)); d != 0 {
				return d
			}
		} else if d := cmp.Compare(a.Flags&flagTemporary, b.Flags&flagTemporary); d != 0 {
			// IPv4: a primary address before a secondary one (same bit as TEMPORARY).
			return d
		}
		return a.Addr.Compare(b.Addr)
	})
	return best.Addr, rejected
}
