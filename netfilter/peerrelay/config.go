package peerrelay

import (
	"net/netip"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/netfilter"
)

// Config is the peer_relay section: the box's tailscaled as a Tailscale Peer Relay.
type Config struct {
	Port int `yaml:"port"` // UDP port tailscaled's relay server binds (default 40000)
	// StaticEndpoints are the ip:port candidates offered besides those tailscaled finds:
	// auto (the line's current public addresses with Port, kept current), explicit
	// addresses (ip or ip:port; auto may stay in the list), or none.
	StaticEndpoints  []string `yaml:"static_endpoints"`
	TailscaledSocket string   `yaml:"tailscaled_socket"` // "": found at the usual paths
	Firewall         string   `yaml:"firewall"`          // auto | iptables | nftables | fw4 | none
}

// Static endpoint words.
const (
	EndpointsAuto = "auto"
	EndpointsNone = "none"
)

// SetDefaults fills unset keys with their defaults.
func (c *Config) SetDefaults() {
	if c.Port == 0 {
		c.Port = 40000
	}
	if len(c.StaticEndpoints) == 0 {
		c.StaticEndpoints = []string{EndpointsAuto}
	}
	if c.Firewall == "" {
		c.Firewall = "auto"
	}
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	if c.Port < 1 || c.Port > 65535 {
		ps.Add("port", "expected a UDP port 1-65535, got %d", c.Port)
	}
	for i, s := range c.StaticEndpoints {
		switch {
		case s == EndpointsNone && len(c.StaticEndpoints) > 1:
			ps.Add(field.Index("static_endpoints", i), "none stands alone")
		case s == EndpointsAuto || s == EndpointsNone:
		default:
			if _, ok := parseEndpoint(s, 1); !ok {
				ps.Add(field.Index("static_endpoints", i), "expected auto, none, an IP address or ip:port (e.g. [2001:db8::1]:40000), got %q", s)
			}
		}
	}
	ps.OneOf("firewall", c.Firewall, "auto", netfilter.BackendIPTables, netfilter.BackendNFTables, netfilter.BackendFW4, netfilter.BackendNone)
	return ps.Err()
}

// parseEndpoint reads "ip" (with port) or "ip:port".
func parseEndpoint(s string, port int) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap, true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
	}
	return netip.AddrPort{}, false
}

// endpoints is the list to set: the explicit ones, and for auto the current public
// addresses with the port; in the config's order, without duplicates.
func (c *Config) endpoints(public []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range c.StaticEndpoints {
		words := []string{s}
		if s == EndpointsAuto {
			words = words[:0]
			for _, a := range public {
				words = append(words, a.String()) // parsed back, unmapped, with the port
			}
		}
		for _, w := range words {
			if ap, ok := parseEndpoint(w, c.Port); ok && !has(out, ap) {
				out = append(out, ap)
			}
		}
	}
	return out
}
