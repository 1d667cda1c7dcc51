package ddns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// Config is the ddns section: the records to keep pointing at this line's addresses and the
// DNS provider that writes them.
type Config struct {
	Provider provider.Config `yaml:"provider"`
	Zone     string          `yaml:"zone"`
	Records  []Record        `yaml:"records"`
	TTL      time.Duration   `yaml:"ttl"` // written as seconds (300) or a duration (5m)
}

// Record is one DNS record to keep up to date and where its address comes from: exactly
// one of Interface, URL, STUN and Value.
type Record struct {
	Name      string `yaml:"name"` // relative to the zone ("@" for the apex) or absolute
	Type      string `yaml:"type"` // A | AAAA
	Interface string `yaml:"interface"`
	URL       string `yaml:"url"`
	Value     string `yaml:"value"`
	// STUN asks a STUN server (host[:port], default port 3478) for this line's mapped
	// address, for when the public address is not on the box; STUNAuto asks the mesh peers'
	// STUN servers (edgerelay relays elsewhere, given with WithMeshSTUN).
	STUN string `yaml:"stun"`
	// Suffix or MAC turn an interface record into one for a LAN host: the interface's
	// current prefix plus the host's fixed interface identifier (AAAA only).
	Suffix string `yaml:"suffix"` // e.g. "::1234"
	MAC    string `yaml:"mac"`    // EUI-64 identifier from the host's MAC address
}

// STUNAuto is the stun value that asks the mesh peers' STUN servers.
const STUNAuto = "auto"

// SetDefaults fills unset keys with their defaults.
func (c *Config) SetDefaults() {
	if c.TTL == 0 {
		c.TTL = 300 * time.Second
	}
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	ps.Merge("provider", c.Provider.Validate())
	if c.Zone == "" {
		ps.Add("zone", "required: the DNS zone the records live in")
	}
	if c.Provider.Type == "duckdns" {
		if z := strings.ToLower(strings.TrimSuffix(c.Zone, ".")); !strings.HasSuffix(z, ".duckdns.org") || strings.Count(z, ".") != 2 {
			ps.Add("zone", "with duckdns, the zone is your DuckDNS name (<name>.duckdns.org), got %q", c.Zone)
		}
		for i, r := range c.Records {
			if r.Name != "@" {
				ps.Add(field.Index("records", i)+".name", "with duckdns, use @: DuckDNS keeps one address per family for the whole name (names under it answer the same), got %q", r.Name)
			}
		}
	}
	if len(c.Records) == 0 {
		ps.Add("records", "at least one record is needed")
	}
	seen := map[string]int{}
	for i := range c.Records {
		r, p := &c.Records[i], field.Index("records", i)
		r.validate(&ps, p, c.Zone)
		if fqdn := RecordFQDN(r.Name, c.Zone); fqdn != "" {
			k := r.Type + " " + fqdn
			if j, dup := seen[k]; dup {
				ps.Add(p, "%s is listed twice (also records[%d])", k, j)
			}
			seen[k] = i
		}
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		ps.Add("ttl", "must be between 1 and 86400 seconds, got %v", c.TTL.Seconds())
	}
	return ps.Err()
}

// validate checks one record (at key p of a section for zone).
func (r *Record) validate(ps *field.Problems, p, zone string) {
	if r.Name == "" {
		ps.Add(p+".name", "required (use @ for the zone apex)")
	} else if zone != "" {
		if _, err := relativeName(r.Name, zone); err != nil {
			ps.Add(p+".name", "%v", err)
		}
	}
	ps.OneOf(p+".type", r.Type, "A", "AAAA")
	sources := 0
	for _, s := range []string{r.Interface, r.URL, r.Value, r.STUN} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		ps.Add(p, "set exactly one address source: interface, url, stun or value")
	}
	if r.Interface != "" && !field.IsIfName(r.Interface) {
		ps.Add(p+".interface", "expected an interface name like pppoe-wan or eth0.2, got %q", r.Interface)
	}
	if r.URL != "" && !field.IsURL(r.URL, "http", "https") {
		ps.Add(p+".url", "expected an http(s) URL of an address echo service, got %q", r.URL)
	}
	r.validateLANHost(ps, p)
	if r.STUN != "" && r.STUN != STUNAuto {
		if hp := withDefaultPort(r.STUN, "3478"); strings.HasPrefix(hp, ":") {
			ps.Add(p+".stun", "%q names no host: give the STUN server as host or host:port", r.STUN)
		} else {
			ps.HostPort(p+".stun", hp)
		}
	}
	if r.Value != "" {
		if _, err := r.fixedValue(); err != nil {
			ps.Add(p+".value", "%v", err)
		}
	}
}

// fixedValue is the address of a value record.
func (r Record) fixedValue() (netip.Addr, error) {
	a, err := netip.ParseAddr(r.Value)
	if err != nil || a.Zone() != "" || (r.Type == "A") != a.Unmap().Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an %s address", r.Value, familyName(r.Type))
	}
	return a.Unmap(), nil
}

// familyName is the address family of a record type.
func familyName(typ string) string {
	if typ == "A" {
		return "IPv4"
	}
	return "IPv6"
}

// validateLANHost checks suffix and mac: one of them, on an AAAA interface record.
func (r *Record) validateLANHost(ps *field.Problems, p string) {
	if r.Suffix == "" && r.MAC == "" {
		return
	}
	switch {
	case r.Suffix != "" && r.MAC != "":
		ps.Add(p, "set suffix or mac, not both")
	case r.Interface == "" || r.Type != "AAAA":
		ps.Add(p, "suffix and mac make an AAAA record from an interface's prefix: they need type: AAAA and interface")
	default:
		if _, err := r.hostID(); err != nil {
			key := p + ".mac"
			if r.Suffix != "" {
				key = p + ".suffix"
			}
			ps.Add(key, "%v", err)
		}
	}
}

// hostID is a LAN host's interface identifier, from suffix or mac (zero when neither).
func (r Record) hostID() (netip.Addr, error) {
	switch {
	case r.Suffix != "":
		return parseSuffix(r.Suffix)
	case r.MAC != "":
		m, err := net.ParseMAC(r.MAC)
		if err != nil || len(m) != 6 {
			return netip.Addr{}, fmt.Errorf("%q is not a 48-bit MAC address like aa:bb:cc:dd:ee:ff", r.MAC)
		}
		return eui64(m), nil
	}
	return netip.Addr{}, nil
}

// parseSuffix reads an interface identifier written as an IPv6 address with only its low 64
// bits set ("::1234", "::a:b:c:d").
func parseSuffix(s string) (netip.Addr, error) {
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

// withDefaultPort returns host:port, adding port when s names none.
func withDefaultPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), port)
}
