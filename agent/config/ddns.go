package config

import (
	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/ddns"
)

// DDNS is the ddns section: ddns.Config, on when present unless enabled is false.
type DDNS struct {
	Enabled     *bool `yaml:"enabled"`
	ddns.Config `yaml:",inline"`
}

func (d *DDNS) check(c *checker, cfg *Config) {
	if !On(d.Enabled, true) {
		return
	}
	c.merge("ddns", d.Config.Validate())
	for i, r := range d.Records {
		if r.STUN == ddns.STUNAuto && len(cfg.Relay.MeshSTUNServers()) == 0 {
			c.add(field.Index("ddns.records", i)+".stun", "auto asks the STUN servers of relay.mesh.peers, and there are none: give host:port of a STUN server outside this network")
		}
	}
}
