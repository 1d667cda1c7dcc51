package config

import (
	"net"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// ACME is the acme section: acme.Config and the DNS provider for the challenges, on when
// present unless enabled is false.
type ACME struct {
	Enabled     *bool `yaml:"enabled"`
	acme.Config `yaml:",inline"`
	DNSProvider provider.Config `yaml:"dns_provider"` // zero: ddns.provider
}

// setDefaults fills acme's own defaults and those it takes from the other sections: the
// relay's hostname as the domain, ddns's provider for the challenges.
func (a *ACME) setDefaults(cfg *Config) {
	a.SetDefaults()
	if len(a.Domains) == 0 && cfg.Relay.Hostname != "" && net.ParseIP(cfg.Relay.Hostname) == nil {
		a.Domains = []string{cfg.Relay.Hostname}
	}
	if a.DNSProvider.IsZero() && cfg.DDNS != nil {
		a.DNSProvider = cfg.DDNS.Provider
	}
}

func (a *ACME) check(c *checker) {
	if !On(a.Enabled, true) {
		return
	}
	c.merge("acme", a.Config.Validate())
	if a.DNSProvider.IsZero() {
		c.add("acme.dns_provider", "required when there is no ddns section to borrow the provider from")
	} else {
		c.merge("acme.dns_provider", a.DNSProvider.Validate())
	}
}
