package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/ddns/provider"
)

// ACME obtains the relay certificate by DNS-01.
type ACME struct {
	Enabled     *bool           `yaml:"enabled"`
	Email       string          `yaml:"email"`
	Directory   string          `yaml:"directory"`
	Domains     []string        `yaml:"domains"`
	DNSProvider provider.Config `yaml:"dns_provider"`
	Resolvers   []string        `yaml:"resolvers"`
	// PropagationTimeout bounds the wait for the TXT record to be visible.
	PropagationTimeout Duration `yaml:"propagation_timeout"`
	EAB                EAB      `yaml:"eab"`
	// CACertFile trusts an extra root for the ACME directory (private CAs, tests).
	CACertFile string `yaml:"ca_cert_file"`
	// Profile asks the CA for a certificate profile (Let's Encrypt: classic, tlsserver,
	// shortlived); "" takes the CA's default.
	Profile string `yaml:"profile"`
}

// EAB is External Account Binding for CAs that require it.
type EAB struct {
	KID      string `yaml:"kid"`
	HMAC     string `yaml:"hmac"`
	HMACFile string `yaml:"hmac_file"`
}

func (a *ACME) setDefaults(cfg *Config) {
	if a.Directory == "" {
		a.Directory = "https://acme-v02.api.letsencrypt.org/directory"
	}
	if len(a.Domains) == 0 && cfg.Relay.Hostname != "" && net.ParseIP(cfg.Relay.Hostname) == nil {
		a.Domains = []string{cfg.Relay.Hostname}
	}
	if a.DNSProvider.IsZero() && cfg.DDNS != nil {
		a.DNSProvider = cfg.DDNS.Provider
	}
	if a.PropagationTimeout == 0 {
		a.PropagationTimeout = Duration(2 * time.Minute)
	}
}

func (a *ACME) check(c *checker, cfg *Config) {
	if !On(a.Enabled, true) {
		return
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		c.add("acme.directory", "expected an https URL, got %q", a.Directory)
	}
	if len(a.Domains) == 0 {
		c.add("acme.domains", "required (defaults to relay.hostname when that is a DNS name)")
	}
	for i, d := range a.Domains {
		if !validHostname(strings.TrimPrefix(d, "*.")) || net.ParseIP(d) != nil {
			c.add(fmt.Sprintf("acme.domains[%d]", i), "%q is not a DNS name", d)
		}
	}
	if a.Profile != "" && !validProfile(a.Profile) {
		c.add("acme.profile", "%q is not a profile name (Let's Encrypt offers classic, tlsserver and shortlived)", a.Profile)
	}
	if a.DNSProvider.IsZero() {
		c.add("acme.dns_provider", "required when there is no ddns section to borrow the provider from")
	} else {
		c.merge("acme.dns_provider", a.DNSProvider.Validate())
	}
}

// validProfile accepts what a CA can name a profile: a short token of letters, digits and
// - _ . (draft-ietf-acme-profiles leaves the names to the CA).
func validProfile(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
