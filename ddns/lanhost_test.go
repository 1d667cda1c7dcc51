package ddns

import (
	"net"
	"net/netip"
	"testing"
)

func TestHostAddr(t *testing.T) {
	iid := func(s string) netip.Addr {
		a, err := parseSuffix(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tt := range []struct {
		prefix string
		plen   int
		iid    netip.Addr
		want   string
	}{
		{"2001:db8:1:2::1", 64, iid("::1234"), "2001:db8:1:2::1234"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, iid("::a:b:c:d"), "2001:db8:1:2:a:b:c:d"},
		{"2001:db8:1:2::1", 128, iid("::1234"), "2001:db8:1:2::1234"}, // /128 taken as /64
		{"2001:db8:1:2::1", 0, iid("::1234"), "2001:db8:1:2::1234"},
		{"2001:db8:1:2::1", 60, iid("::1234"), "2001:db8:1::1234"}, // a /60 keeps only 60 bits
		{"2001:db8:1:2::1", 64, eui64(net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}), "2001:db8:1:2:a8bb:ccff:fedd:eeff"},
		{"2001:db8:1:2::1", 64, eui64(net.HardwareAddr{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}), "2001:db8:1:2:211:22ff:fe33:4455"},
	} {
		if got := hostAddr(netip.MustParseAddr(tt.prefix), tt.plen, tt.iid); got.String() != tt.want {
			t.Errorf("hostAddr(%s/%d, %s) = %s, want %s", tt.prefix, tt.plen, tt.iid, got, tt.want)
		}
	}
}
