package config

import "github.com/edgerelay/edgerelay/netfilter"

// Subnet is the subnet section: netfilter.Config, on when present unless enabled is false.
type Subnet struct {
	Enabled          *bool `yaml:"enabled"`
	netfilter.Config `yaml:",inline"`
}

func (s *Subnet) check(c *checker) {
	if On(s.Enabled, true) {
		c.merge("subnet", s.Config.Validate())
	}
}
