package config

import (
	"net"
	"strconv"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/relay"
)

// What one section takes from another: the loader's only knowledge of how the parts fit.

// acmeOn reports whether the acme part runs.
func (cfg *Config) acmeOn() bool { return cfg.ACME != nil && On(cfg.ACME.Enabled, true) }

// borrowsDDNSProvider reports whether acme writes its challenges through ddns.provider.
func (cfg *Config) borrowsDDNSProvider() bool {
	return cfg.acmeOn() && cfg.ACME.DNSProvider.IsZero() && cfg.DDNS != nil
}

// defaultsBefore are the defaults that depend on other sections and must be set before the
// parts fill their own: the relay serves the acme certificate when acme is on.
func (cfg *Config) defaultsBefore() {
	if cfg.Relay.TLS.Mode == "" && cfg.acmeOn() {
		cfg.Relay.TLS.Mode = relay.TLSACME
	}
}

// defaultsAfter are those taken from other sections' values: acme's domain is the relay's
// hostname, and its DNS provider the ddns one.
func (cfg *Config) defaultsAfter() {
	a := cfg.ACME
	if a == nil {
		return
	}
	if len(a.Domains) == 0 && cfg.Relay.Hostname != "" && net.ParseIP(cfg.Relay.Hostname) == nil {
		a.Domains = []string{cfg.Relay.Hostname}
	}
	if a.DNSProvider.IsZero() && cfg.DDNS != nil {
		a.DNSProvider = cfg.DDNS.Provider
	}
}

// checkAcross checks what one section needs of another.
func (cfg *Config) checkAcross(c *checker) {
	if On(cfg.Relay.Enabled, true) && cfg.Relay.TLS.Mode == relay.TLSACME && !cfg.acmeOn() {
		c.add("relay.tls.mode", "acme needs an enabled acme section")
	}
	if d := cfg.DDNS; d != nil && On(d.Enabled, true) {
		for i, r := range d.Records {
			if r.STUN == ddns.STUNAuto && len(cfg.Relay.MeshSTUNServers()) == 0 {
				c.add(field.Index("ddns.records", i)+".stun", "auto asks the STUN servers of relay.mesh.peers, and there are none: give host:port of a STUN server outside this network")
			}
		}
	}
	if cfg.Web.Listen != "" && On(cfg.Relay.Enabled, true) && samePort(cfg.Web.Listen, cfg.Relay.Listen) {
		c.add("web.listen", "must not be the relay's DERP port (relay.listen %s): that port faces the internet", cfg.Relay.Listen)
	}
	if pr := cfg.PeerRelay; pr != nil && On(pr.Enabled, true) && On(cfg.Relay.Enabled, true) {
		if _, port, _ := net.SplitHostPort(cfg.Relay.STUNAddr()); port == strconv.Itoa(pr.Port) {
			c.add("peer_relay.port", "UDP %s is relay.stun_listen's port; tailscaled's peer relay needs a port of its own", port)
		}
	}
	if cfg.acmeOn() {
		if cfg.ACME.DNSProvider.IsZero() {
			c.add("acme.dns_provider", "required when there is no ddns section to borrow the provider from")
		} else {
			c.merge("acme.dns_provider", cfg.ACME.DNSProvider.Validate())
		}
	}
}

// samePort reports whether two host:port addresses name the same TCP port.
func samePort(a, b string) bool {
	_, pa, errA := net.SplitHostPort(a)
	_, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa == pb
}
