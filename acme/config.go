package acme

import (
	"net"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Config is the acme section, less the DNS provider (the agent builds it from
// acme.dns_provider or ddns.provider and passes it to New).
type Config struct {
	Email     string   `yaml:"email"`
	Directory string   `yaml:"directory"`
	Domains   []string `yaml:"domains"`
	Resolvers []string `yaml:"resolvers"` // DNS servers used to check propagation ("" port: 53)
	// PropagationTimeout bounds the wait for the TXT record to be visible.
	PropagationTimeout time.Duration `yaml:"propagation_timeout"`
	EAB                EAB           `yaml:"eab"`
	// CACertFile trusts an extra root for the ACME directory (private CAs, tests).
	CACertFile string `yaml:"ca_cert_file"`
	// Profile asks the CA for a certificate profile (Let's Encrypt: classic, tlsserver,
	// shortlived); "" takes the CA's default.
	Profile string `yaml:"profile"`
}

// EAB is External Account Binding for CAs that require it. The loader reads HMACFile into
// HMAC.
type EAB struct {
	KID      string `yaml:"kid"`
	HMAC     string `yaml:"hmac"`
	HMACFile string `yaml:"hmac_file"`
}

// LetsEncrypt is the default directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// SetDefaults fills unset keys with their defaults.
func (c *Config) SetDefaults() {
	if c.Directory == "" {
		c.Directory = LetsEncrypt
	}
	if c.PropagationTimeout == 0 {
		c.PropagationTimeout = 2 * time.Minute
	}
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	if !field.IsURL(c.Directory, "https") {
		ps.Add("directory", "expected an https URL, got %q", c.Directory)
	}
	if len(c.Domains) == 0 {
		ps.Add("domains", "required (defaults to relay.hostname when that is a DNS name)")
	}
	for i, d := range c.Domains {
		if !field.IsHost(strings.TrimPrefix(d, "*.")) || net.ParseIP(d) != nil {
			ps.Add(field.Index("domains", i), "%q is not a DNS name", d)
		}
	}
	if c.Profile != "" && !validProfile(c.Profile) {
		ps.Add("profile", "%q is not a profile name (Let's Encrypt offers classic, tlsserver and shortlived)", c.Profile)
	}
	if c.EAB.KID != "" && c.EAB.HMAC == "" && c.EAB.HMACFile == "" {
		ps.Add("eab.hmac", "required (or hmac_file) with eab.kid: the HMAC key the CA gave with the key ID")
	}
	for i, r := range c.Resolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			r = net.JoinHostPort(r, "53")
		}
		ps.HostPort(field.Index("resolvers", i), r)
	}
	if c.PropagationTimeout < 0 {
		ps.Add("propagation_timeout", "must not be negative, got %s", c.PropagationTimeout)
	}
	return ps.Err()
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
