package netfilter

import (
	"net/netip"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Config is the subnet section: what makes this box a Tailscale subnet router.
type Config struct {
	Routes             []string   `yaml:"routes"`         // CIDRs, or auto: the LAN interfaces' prefixes
	LANInterfaces      []string   `yaml:"lan_interfaces"` // forwarded to and from tailscale
	TailscaleInterface string     `yaml:"tailscale_interface"`
	SNAT               *bool      `yaml:"snat"`      // masquerade towards the LAN (default on)
	MSSClamp           *bool      `yaml:"mss_clamp"` // clamp TCP MSS to the path MTU (default on)
	Firewall           string     `yaml:"firewall"`  // auto | iptables | nftables | fw4 | none
	Advertise          *bool      `yaml:"advertise"` // set the routes on the local tailscaled (default on)
	TailscaledSocket   string     `yaml:"tailscaled_socket"`
	RulePriority       int        `yaml:"rule_priority"` // our ip rules' preference
	Headscale          *Headscale `yaml:"headscale"`
}

// Headscale optionally approves advertised routes on a headscale server. The loader reads
// APIKeyFile into APIKey.
type Headscale struct {
	URL        string `yaml:"url"`
	APIKey     string `yaml:"api_key"`
	APIKeyFile string `yaml:"api_key_file"`
}

// SetDefaults fills unset keys with their defaults.
func (c *Config) SetDefaults() {
	if len(c.Routes) == 0 {
		c.Routes = []string{"auto"}
	}
	if len(c.LANInterfaces) == 0 {
		c.LANInterfaces = []string{"br-lan"}
	}
	if c.TailscaleInterface == "" {
		c.TailscaleInterface = "tailscale0"
	}
	if c.Firewall == "" {
		c.Firewall = "auto"
	}
	if c.TailscaledSocket == "" {
		c.TailscaledSocket = "/var/run/tailscale/tailscaled.sock"
	}
	if c.RulePriority == 0 {
		c.RulePriority = 1250
	}
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	for i, r := range c.Routes {
		if r == "auto" {
			continue
		}
		if _, err := netip.ParsePrefix(r); err != nil {
			ps.Add(field.Index("routes", i), "expected auto or a CIDR like 192.168.1.0/24, got %q", r)
		}
	}
	for i, n := range c.LANInterfaces {
		if !field.IsIfName(n) {
			ps.Add(field.Index("lan_interfaces", i), "expected an interface name like br-lan or eth0.2, got %q", n)
		} else if n == c.TailscaleInterface {
			ps.Add(field.Index("lan_interfaces", i), "%q is the tailscale interface", n)
		}
	}
	if !field.IsIfName(c.TailscaleInterface) {
		ps.Add("tailscale_interface", "expected an interface name like tailscale0, got %q", c.TailscaleInterface)
	}
	ps.OneOf("firewall", c.Firewall, "auto", BackendIPTables, BackendNFTables, BackendFW4, BackendNone)
	if c.RulePriority < 1 || c.RulePriority >= 32766 {
		ps.Add("rule_priority", "must be between 1 and 32765, got %d", c.RulePriority)
	} else if c.RulePriority >= 5200 && c.RulePriority <= 5299 {
		ps.Add("rule_priority", "5200-5299 belong to tailscaled; pick another, got %d", c.RulePriority)
	}
	if h := c.Headscale; h != nil && h.URL != "" {
		if !field.IsURL(h.URL, "http", "https") {
			ps.Add("headscale.url", "expected headscale's http(s) URL, got %q", h.URL)
		}
		if h.APIKey == "" && h.APIKeyFile == "" {
			ps.Add("headscale.api_key_file", "required with headscale.url (create a key with `headscale apikeys create`)")
		}
	}
	return ps.Err()
}
