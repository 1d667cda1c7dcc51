package config

import (
	"fmt"
	"net"
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
	// alidns, tencentcloud/dnspod, huaweicloud
	AccessKeyID         string `yaml:"access_key_id"`
	AccessKeySecret     string `yaml:"access_key_secret"`
	AccessKeySecretFile string `yaml:"access_key_secret_file"`
	Region              string `yaml:"region"`
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
}

func (d *DDNS) setDefaults() {
	if d.TTL == 0 {
		d.TTL = 300
	}
}

func (d *DDNS) check(c *checker) {
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
		for _, s := range []string{r.Interface, r.URL, r.Value} {
			if s != "" {
				sources++
			}
		}
		if sources != 1 {
			c.add(p, "set exactly one address source: interface, url or value")
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
var ProviderTypes = []string{"alidns", "cloudflare", "duckdns", "dynv6", "huaweicloud", "rfc2136"}

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
	}
}
