package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Subnet prepares the box to be a Tailscale subnet router.
type Subnet struct {
	Enabled            *bool      `yaml:"enabled"`
	Routes             []string   `yaml:"routes"`
	LANInterfaces      []string   `yaml:"lan_interfaces"`
	TailscaleInterface string     `yaml:"tailscale_interface"`
	SNAT               *bool      `yaml:"snat"`
	MSSClamp           *bool      `yaml:"mss_clamp"`
	Firewall           string     `yaml:"firewall"` // auto | iptables | nftables | fw4 | none
	Advertise          *bool      `yaml:"advertise"`
	TailscaledSocket   string     `yaml:"tailscaled_socket"`
	RulePriority       int        `yaml:"rule_priority"`
	Headscale          *Headscale `yaml:"headscale"`
}

// Headscale optionally approves advertised routes on a headscale server.
type Headscale struct {
	URL        string `yaml:"url"`
	APIKeyFile string `yaml:"api_key_file"`
}

// SetDefaults fills unset keys with their defaults (Load does this; callers that build a
// Subnet by hand call it too).
func (s *Subnet) SetDefaults() {
	if len(s.Routes) == 0 {
		s.Routes = []string{"auto"}
	}
	if len(s.LANInterfaces) == 0 {
		s.LANInterfaces = []string{"br-lan"}
	}
	if s.TailscaleInterface == "" {
		s.TailscaleInterface = "tailscale0"
	}
	if s.Firewall == "" {
		s.Firewall = "auto"
	}
	if s.TailscaledSocket == "" {
		s.TailscaledSocket = "/var/run/tailscale/tailscaled.sock"
	}
	if s.RulePriority == 0 {
		s.RulePriority = 1250
	}
}

func (s *Subnet) check(c *checker) {
	if !On(s.Enabled, true) {
		return
	}
	for i, r := range s.Routes {
		if r == "auto" {
			continue
		}
		if _, err := netip.ParsePrefix(r); err != nil {
			c.add(fmt.Sprintf("subnet.routes[%d]", i), "expected auto or a CIDR like 192.168.1.0/24, got %q", r)
		}
	}
	for i, n := range s.LANInterfaces {
		if !validIfName(n) {
			c.add(fmt.Sprintf("subnet.lan_interfaces[%d]", i), "expected an interface name like br-lan or eth0.2, got %q", n)
		} else if n == s.TailscaleInterface {
			c.add(fmt.Sprintf("subnet.lan_interfaces[%d]", i), "%q is the tailscale interface", n)
		}
	}
	if !validIfName(s.TailscaleInterface) {
		c.add("subnet.tailscale_interface", "expected an interface name like tailscale0, got %q", s.TailscaleInterface)
	}
	oneOf(c, "subnet.firewall", s.Firewall, "auto", "iptables", "nftables", "fw4", "none")
	if s.RulePriority < 1 || s.RulePriority >= 32766 {
		c.add("subnet.rule_priority", "must be between 1 and 32765, got %d", s.RulePriority)
	} else if s.RulePriority >= 5200 && s.RulePriority <= 5299 {
		c.add("subnet.rule_priority", "5200-5299 belong to tailscaled; pick another, got %d", s.RulePriority)
	}
}

// validIfName accepts what Linux accepts as an interface name (dots included, as in eth0.2),
// minus characters that would break a /proc/sys path or a firewall rule.
func validIfName(n string) bool {
	return n != "" && len(n) <= 15 && n != "." && n != ".." && !strings.ContainsAny(n, "/\"\\ \t\n:")
}
