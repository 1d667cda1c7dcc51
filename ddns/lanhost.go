package ddns

import (
	"net"
	"net/netip"
)

// hostAddr is a LAN host's address: the first plen bits of prefix (the router's address on
// the LAN interface) followed by the rest of iid (the host's fixed interface identifier).
// A prefix longer than 64 bits, or an unknown one, is taken as /64: SLAAC and DHCPv6 hosts
// on a LAN share the /64 the router announces.
func hostAddr(prefix netip.Addr, plen int, iid netip.Addr) netip.Addr {
	if plen <= 0 || plen > 64 {
		plen = 64
	}
	p, id := prefix.As16(), iid.As16()
	var out [16]byte
	for i := range out {
		bits := min(max(plen-8*i, 0), 8) // prefix bits in this byte
		mask := byte(0xff << (8 - bits))
		out[i] = p[i]&mask | id[i]&^mask
	}
	return netip.AddrFrom16(out)
}

// eui64 is the modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 appendix A):
// the universal/local bit flipped and ff:fe in the middle, as a SLAAC host without privacy
// or stable-privacy addressing forms it.
func eui64(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	copy(b[8:], []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	return netip.AddrFrom16(b)
}

// prefixLen returns the prefix length of a among cands (0 when unknown).
func prefixLen(cands []Candidate, a netip.Addr) int {
	for _, c := range cands {
		if c.Addr == a {
			return c.PrefixLen
		}
	}
	return 0
}
