package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/edgerelay/edgerelay/ddns/provider"
)

// DDNS keeps records pointing at the line's addresses.
type DDNS struct {
	Enabled  *bool           `yaml:"enabled"`
	Provider provider.Config `yaml:"provider"`
	Zone     string          `yaml:"zone"`
	Records  []Record        `yaml:"records"`
	TTL      int             `yaml:"ttl"`
}

// Record is one DNS record to keep up to date and where its address comes from.
type Record struct {
	Name      string `yaml:"name"`
	Type      string `yaml:"type"` // A | AAAA
	Interface string `yaml:"interface"`
	URL       string `yaml:"url"`
	Value     string `yaml:"value"`
	// STUN asks a STUN server (host[:port], default port 3478) for this line's mapped
	// address, for when the public address is not on the box; "auto" asks the mesh peers'
	// STUN servers (edgerelay relays elsewhere, relay.mesh.peers).
	STUN string `yaml:"stun"`
	// Suffix or MAC turn an interface record into one for a LAN host: the interface's
	// current prefix plus the host's fixed interface identifier (AAAA only).
	Suffix string `yaml:"suffix"` // e.g. "::1234"
	MAC    string `yaml:"mac"`    // EUI-64 identifier from the host's MAC address
}

// STUNAuto is the stun value that asks the mesh peers' STUN servers.
const STUNAuto = "auto"

func (d *DDNS) setDefaults() {
	if d.TTL == 0 {
		d.TTL = 300
	}
}

func (d *DDNS) check(c *checker, cfg *Config) {
	if !On(d.Enabled, true) {
		return
	}
	c.merge("ddns.provider", d.Provider.Validate())
	if d.Zone == "" {
		c.add("ddns.zone", "required: the DNS zone the records live in")
	}
	if d.Provider.Type == "duckdns" {
		if z := strings.ToLower(strings.TrimSuffix(d.Zone, ".")); !strings.HasSuffix(z, ".duckdns.org") || strings.Count(z, ".") != 2 {
			c.add("ddns.zone", "with duckdns, the zone is your DuckDNS name (<name>.duckdns.org), got %q", d.Zone)
		}
		for i, r := range d.Records {
			if r.Name != "@" {
				c.add(fmt.Sprintf("ddns.records[%d].name", i), "with duckdns, use @: DuckDNS keeps one address per family for the whole name (names under it answer the same), got %q", r.Name)
			}
		}
	}
	if len(d.Records) == 0 {
		c.add("ddns.records", "at least one record is needed")
	}
	for i, r := range d.Records {
		p := fmt.Sprintf("ddns.records[%d]", i)
		if r.Name == "" {
			c.add(p+".name", "required (use @ for the zone apex)")
		}
		oneOf(c, p+".type", r.Type, "A", "AAAA")
		sources := 0
		for _, s := range []string{r.Interface, r.URL, r.Value, r.STUN} {
			if s != "" {
				sources++
			}
		}
		if sources != 1 {
			c.add(p, "set exactly one address source: interface, url, stun or value")
		}
		r.checkLANHost(c, p)
		if r.STUN == STUNAuto && len(cfg.Relay.MeshSTUNServers()) == 0 {
			c.add(p+".stun", "auto asks the STUN servers of relay.mesh.peers, and there are none: give host:port of a STUN server outside this network")
		} else if r.STUN != "" && r.STUN != STUNAuto {
			if hp := WithDefaultPort(r.STUN, "3478"); strings.HasPrefix(hp, ":") {
				c.add(p+".stun", "%q names no host: give the STUN server as host or host:port", r.STUN)
			} else {
				checkHostPort(c, p+".stun", hp)
			}
		}
		if r.Value != "" {
			ip := net.ParseIP(r.Value)
			if ip == nil || (r.Type == "A") != (ip.To4() != nil) {
				c.add(p+".value", "%q is not an %s address", r.Value, map[bool]string{true: "IPv4", false: "IPv6"}[r.Type == "A"])
			}
		}
	}
	if d.TTL < 1 || d.TTL > 86400 {
		c.add("ddns.ttl", "must be between 1 and 86400 seconds, got %d", d.TTL)
	}
}

// checkLANHost checks suffix and mac: one of them, on an AAAA interface record.
func (r Record) checkLANHost(c *checker, p string) {
	if r.Suffix == "" && r.MAC == "" {
		return
	}
	switch {
	case r.Suffix != "" && r.MAC != "":
		c.add(p, "set suffix or mac, not both")
	case r.Interface == "" || r.Type != "AAAA":
		c.add(p, "suffix and mac make an AAAA record from an interface's prefix: they need type: AAAA and interface")
	case r.Suffix != "":
		if _, err := ParseSuffix(r.Suffix); err != nil {
			c.add(p+".suffix", "%v", err)
		}
	default:
		if _, err := ParseMAC(r.MAC); err != nil {
			c.add(p+".mac", "%v", err)
		}
	}
}

// ParseSuffix reads an interface identifier written as an IPv6 address with only its low 64
// bits set ("::1234", "::a:b:c:d").
func ParseSuffix(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an interface identifier written as an IPv6 address, like ::1234", s)
	}
	b := a.As16()
	if [8]byte(b[:8]) != [8]byte{} {
		return netip.Addr{}, fmt.Errorf("%q sets prefix bits: give only the host part, like ::1234 (the prefix comes from the interface)", s)
	}
	if [8]byte(b[8:]) == [8]byte{} {
		return netip.Addr{}, fmt.Errorf("%q is all zeros: give the host's interface identifier, like ::1234", s)
	}
	return a, nil
}

// ParseMAC reads a 48-bit MAC address (aa:bb:cc:dd:ee:ff or aa-bb-…).
func ParseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("%q is not a 48-bit MAC address like aa:bb:cc:dd:ee:ff", s)
	}
	return m, nil
}

// WithDefaultPort returns host:port, adding port when s names none.
func WithDefaultPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), port)
}
