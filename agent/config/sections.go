package config

import (
	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/ddns/provider"
	"github.com/edgerelay/edgerelay/netfilter"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"github.com/edgerelay/edgerelay/notify"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/web"
)

// Each part's section is the part's own Config (defined, defaulted and validated in the
// part's package) inline, plus enabled, which only the agent reads.
//
// Adding a part: define its Config with SetDefaults and Validate in its package, add a
// section type and a Config field here, list it in sections, and list the part in
// agent/parts.go. UCI gets a `config <key>` section of the same name by itself.

// Relay is the relay section: relay.Config, on unless enabled is false.
type Relay struct {
	Enabled      *bool `yaml:"enabled"`
	relay.Config `yaml:",inline"`
}

// DDNS is the ddns section: ddns.Config, on when present unless enabled is false.
type DDNS struct {
	Enabled     *bool `yaml:"enabled"`
	ddns.Config `yaml:",inline"`
}

// ACME is the acme section: acme.Config and the DNS provider for the challenges, on when
// present unless enabled is false.
type ACME struct {
	Enabled     *bool `yaml:"enabled"`
	acme.Config `yaml:",inline"`
	DNSProvider provider.Config `yaml:"dns_provider"` // zero: ddns.provider (compose.go)
}

// Subnet is the subnet section: netfilter.Config, on when present unless enabled is false.
type Subnet struct {
	Enabled          *bool `yaml:"enabled"`
	netfilter.Config `yaml:",inline"`
}

// PeerRelay is the peer_relay section: peerrelay.Config, on when present unless enabled
// is false.
type PeerRelay struct {
	Enabled          *bool `yaml:"enabled"`
	peerrelay.Config `yaml:",inline"`
}

// Notify is the notify section: notify.Config, on when present unless enabled is false.
type Notify struct {
	Enabled       *bool `yaml:"enabled"`
	notify.Config `yaml:",inline"`
}

var _ partConfig = (*web.Config)(nil)

// partConfig is what the loader asks of a part's Config.
type partConfig interface {
	SetDefaults()
	Validate() error
}

// section is one part's section in a config.
type section struct {
	key   string     // YAML key and UCI section type
	on    bool       // the part runs
	part  partConfig // the part's Config
	whole any        // the section (pointer), for reading its secrets
}

// sections lists the parts' sections present in cfg.
func (cfg *Config) sections() []section {
	ss := []section{{"relay", On(cfg.Relay.Enabled, true), &cfg.Relay.Config, &cfg.Relay}}
	if s := cfg.DDNS; s != nil {
		ss = append(ss, section{"ddns", On(s.Enabled, true), &s.Config, s})
	}
	if s := cfg.ACME; s != nil {
		ss = append(ss, section{"acme", On(s.Enabled, true), &s.Config, s})
	}
	if s := cfg.Subnet; s != nil {
		ss = append(ss, section{"subnet", On(s.Enabled, true), &s.Config, s})
	}
	if s := cfg.PeerRelay; s != nil {
		ss = append(ss, section{"peer_relay", On(s.Enabled, true), &s.Config, s})
	}
	if s := cfg.Notify; s != nil {
		ss = append(ss, section{"notify", On(s.Enabled, true), &s.Config, s})
	}
	return append(ss, section{"web", cfg.Web.Listen != "", &cfg.Web, &cfg.Web})
}
