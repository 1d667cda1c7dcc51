package ddns

import (
	"net"
	"net/netip"
)

// The one rule for "this line's public address", used for what ddns publishes, for the
// relay's addresses in its DERP map (the agent hands them over) and for an IP-only relay's
// hostname.
//
// Public: a unicast address the internet can reach. IPv4 excludes the special-purpose
// ranges below (RFC 6890 and its updates); IPv6 must be global unicast (2000::/3) and not
// link-local, ULA, loopback or multicast, so NAT64 (64:ff9b::/96) is out as well. The
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) count
// as public: no line is ever given one, and they are what examples and tests use.

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	// nonPublic4 are IPv4 ranges that are never reachable from the internet as a WAN address.
	nonPublic4 = []struct {
		p      netip.Prefix
		reason string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified range"},
		{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918)"},
		{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918)"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	}
)

// PublicReason returns "" when a is a public address (see above), else why it is not.
func PublicReason(a netip.Addr) string {
	if !a.IsValid() {
		return "no address"
	}
	a = a.Unmap()
	if a.Is4() {
		for _, r := range nonPublic4 {
			if r.p.Contains(a) {
				return r.reason
			}
		}
		return ""
	}
	switch {
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsPrivate():
		return "unique local (fc00::/7)"
	case a.IsLoopback(), a.IsUnspecified(), a.IsMulticast():
		return "not unicast"
	case !globalUnicast6.Contains(a):
		return "not global unicast (2000::/3)"
	}
	return ""
}

// IsPublic reports whether a is a public address.
func IsPublic(a netip.Addr) bool { return PublicReason(a) == "" }

// LocalAddrs returns the first public IPv4 and IPv6 address on this box's interfaces
// (either invalid when there is none): an IP-only relay's addresses when ddns is off.
func LocalAddrs() (v4, v6 netip.Addr) {
	eachLocalAddr(func(ip netip.Addr) {
		switch {
		case !IsPublic(ip):
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && !v6.IsValid():
			v6 = ip
		}
	})
	return v4, v6
}

// HasLocalAddr reports whether ip is an address of one of this box's interfaces.
func HasLocalAddr(ip netip.Addr) bool {
	found := false
	eachLocalAddr(func(a netip.Addr) { found = found || a == ip.Unmap() })
	return found
}

func eachLocalAddr(f func(netip.Addr)) {
	ifaddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifaddrs {
		if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
			f(pfx.Addr().Unmap())
		}
	}
}
