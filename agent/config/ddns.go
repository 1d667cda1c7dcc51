package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// DDNS keeps records pointing at the line's addresses.
type DDNS struct {
	Enabled  *bool    `yaml:"enabled"`
	Provider Provider `yaml:"provider"`
	Zone     string   `yaml:"zone"`
	Records  []Record `yaml:"records"`
	TTL      int      `yaml:"ttl"`
}

// Provider configures a libdns DNS provider. Which keys apply depends on Type.
type Provider struct {
	Type string `yaml:"type"`
	// cloudflare (an API token), duckdns (the account's token), dynv6 (an HTTP token)
	APIToken     string `yaml:"api_token"`
	APITokenFile string `yaml:"api_token_file"`
	// rfc2136
	Server  string `yaml:"server"`
	KeyName string `yaml:"key_name"`
	KeyAlg  string `yaml:"key_alg"`
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
	// alidns, huaweicloud
	AccessKeyID         string `yaml:"access_key_id"`
	AccessKeySecret     string `yaml:"access_key_secret"`
	AccessKeySecretFile string `yaml:"access_key_secret_file"`
	Region              string `yaml:"region"`
	// tencentcloud (alias dnspod): a Tencent Cloud API key (CAM SecretId/SecretKey)
	SecretID      string `yaml:"secret_id"`
	SecretKey     string `yaml:"secret_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
}

// IsZero reports whether no provider was configured (acme then reuses ddns.provider).
func (p Provider) IsZero() bool { return p == Provider{} }

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
	d.Provider.check(c, "ddns.provider")
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

// ProviderTypes are the DNS providers edgerelay can drive (ddns/provider.Types; a test
// there keeps the two lists equal).
var ProviderTypes = []string{"alidns", "cloudflare", "dnspod", "duckdns", "dynv6", "huaweicloud", "rfc2136", "tencentcloud"}

// TSIGAlgorithms are the key_alg values for rfc2136 (BIND and Knot accept them all); the
// trailing dot of the FQDN form and case do not matter.
var TSIGAlgorithms = []string{"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}

// TSIGAlgorithm is key_alg in the form TSIGAlgorithms lists.
func TSIGAlgorithm(keyAlg string) string { return strings.ToLower(strings.TrimSuffix(keyAlg, ".")) }

func (p *Provider) check(c *checker, path string) {
	if p.Type == "" {
		c.add(path+".type", "required (one of %s)", strings.Join(ProviderTypes, ", "))
		return
	}
	oneOf(c, path+".type", p.Type, ProviderTypes...)
	switch p.Type {
	case "cloudflare":
		if p.APIToken == "" && p.APITokenFile == "" {
			c.add(path+".api_token", "required (or api_token_file): a Cloudflare API token with Zone.DNS edit rights")
		}
	case "duckdns":
		if p.APIToken == "" && p.APITokenFile == "" {
			c.add(path+".api_token", "required (or api_token_file): the token shown on your DuckDNS account page")
		}
	case "dynv6":
		if p.APIToken == "" && p.APITokenFile == "" {
			c.add(path+".api_token", "required (or api_token_file): an HTTP token from dynv6.com/keys")
		}
	case "rfc2136":
		if p.Server == "" {
			c.add(path+".server", "required: the DNS server accepting updates, host:port")
		}
		if p.KeyName == "" {
			c.add(path+".key_name", "required: the TSIG key name the server allows updates for")
		}
		if p.Key == "" && p.KeyFile == "" {
			c.add(path+".key", "required (or key_file): the TSIG secret (base64)")
		}
		if p.KeyAlg != "" {
			oneOf(c, path+".key_alg", TSIGAlgorithm(p.KeyAlg), TSIGAlgorithms...)
		}
	case "alidns", "huaweicloud":
		if p.AccessKeyID == "" {
			c.add(path+".access_key_id", "required for %s", p.Type)
		}
		if p.AccessKeySecret == "" && p.AccessKeySecretFile == "" {
			c.add(path+".access_key_secret", "required (or access_key_secret_file) for %s", p.Type)
		}
	case "tencentcloud", "dnspod":
		if p.SecretID == "" {
			c.add(path+".secret_id", "required for %s: the SecretId of a Tencent Cloud API key", p.Type)
		}
		if p.SecretKey == "" && p.SecretKeyFile == "" {
			c.add(path+".secret_key", "required (or secret_key_file) for %s: the SecretKey of that API key", p.Type)
		}
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
