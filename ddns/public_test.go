package ddns

import (
	"net/netip"
	"testing"
)

// TestPublicAddressRule is the one table for what counts as this line's public address
// (for ddns records, the relay's DERP map and an IP-only relay's hostname).
func TestPublicAddressRule(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"81.2.69.160", true},
		{"192.0.2.1", true},    // documentation (TEST-NET-1): public by decision
		{"198.51.100.7", true}, // TEST-NET-2
		{"203.0.113.9", true},  // TEST-NET-3
		{"::ffff:203.0.113.9", true},
		{"0.1.2.3", false},
		{"10.1.2.3", false},
		{"100.64.0.1", false}, // CGNAT
		{"100.100.100.100", false},
		{"127.0.0.1", false},
		{"169.254.1.1", false},
		{"172.16.5.4", false},
		{"172.32.0.1", true},
		{"192.0.0.8", false}, // IETF protocol assignments
		{"192.168.1.1", false},
		{"198.18.0.1", false}, // benchmarking
		{"198.19.255.254", false},
		{"198.20.0.1", true},
		{"224.0.0.251", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		{"2606:4700::1111", true},
		{"2001:db8::1", true}, // documentation: public by decision
		{"2002:c000:201::1", true},
		{"fe80::1", false},
		{"fd12:3456::1", false}, // ULA
		{"::1", false},
		{"::", false},
		{"ff02::1", false},
		{"64:ff9b::c000:201", false}, // NAT64: outside 2000::/3
		{"4000::1", false},
	} {
		a := netip.MustParseAddr(c.addr)
		if got := IsPublic(a); got != c.public {
			t.Errorf("IsPublic(%s) = %v (%q), want %v", c.addr, got, PublicReason(a), c.public)
		}
	}
	if IsPublic(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
	// A record's family comes first.
	if publicReason("A", netip.MustParseAddr("2001:db8::1")) != "not IPv4" || publicReason("AAAA", netip.MustParseAddr("192.0.2.1")) != "not IPv6" {
		t.Error("family check")
	}
}
