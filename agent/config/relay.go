package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Relay configures the DERP and STUN servers.
type Relay struct {
	Enabled       *bool         `yaml:"enabled"`
	Hostname      string        `yaml:"hostname"`
	Listen        string        `yaml:"listen"`
	STUNListen    *string       `yaml:"stun_listen"` // nil: default; "": STUN off
	Region        Region        `yaml:"region"`
	TLS           TLS           `yaml:"tls"`
	VerifyClients VerifyClients `yaml:"verify_clients"`
	Mesh          Mesh          `yaml:"mesh"`
	// IPv4 and IPv6 override the addresses published in the DERP map ("none" hides a family).
	IPv4 string `yaml:"ipv4"`
	IPv6 string `yaml:"ipv6"`
	// KeepAlive is the interval between KeepAlive frames (clients time out after 120 s).
	KeepAlive Duration `yaml:"keepalive"`
	// WriteTimeout drops a client whose socket does not take a frame in this time.
	WriteTimeout Duration `yaml:"write_timeout"`
	// HandshakeTimeout bounds the upgrade and the DERP handshake.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// QueueDepth is the per-client queue length (data and disco queues each).
	QueueDepth int `yaml:"queue_depth"`
}

// Region is the DERP region this node belongs to.
type Region struct {
	ID   int    `yaml:"id"`
	Code string `yaml:"code"`
	Name string `yaml:"name"`
}

// TLS selects where the relay's certificate comes from.
type TLS struct {
	Mode     string `yaml:"mode"` // acme | manual | self-signed
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// VerifyClients lists the admission checks; a client is admitted if one says yes.
type VerifyClients struct {
	TailscaledSocket string   `yaml:"tailscaled_socket"`
	URL              string   `yaml:"url"`
	FailOpen         bool     `yaml:"fail_open"`
	Allow            []string `yaml:"allow"`
}

// Mesh joins several relays into one region.
type Mesh struct {
	KeyFile string   `yaml:"key_file"`
	Peers   []string `yaml:"peers"`
}

func (r *Relay) setDefaults(acmeOn bool) {
	if r.Listen == "" {
		r.Listen = ":12345"
	}
	if r.STUNListen == nil {
		s := ":3478"
		r.STUNListen = &s
	}
	if r.Region.ID == 0 {
		r.Region.ID = 900
	}
	if r.Region.Code == "" {
		r.Region.Code = "home"
	}
	if r.Region.Name == "" {
		r.Region.Name = "Home"
	}
	if r.TLS.Mode == "" {
		r.TLS.Mode = "self-signed"
		if acmeOn {
			r.TLS.Mode = "acme"
		}
	}
	if r.KeepAlive == 0 {
		r.KeepAlive = Duration(60 * time.Second)
	}
	if r.WriteTimeout == 0 {
		r.WriteTimeout = Duration(2 * time.Second)
	}
	if r.HandshakeTimeout == 0 {
		r.HandshakeTimeout = Duration(10 * time.Second)
	}
	if r.QueueDepth == 0 {
		r.QueueDepth = 32
	}
}

func (r *Relay) check(c *checker, cfg *Config) {
	if !On(r.Enabled, true) {
		return
	}
	if r.Hostname != "" && !validHostname(r.Hostname) {
		c.add("relay.hostname", "%q is neither a DNS name nor an IP address", r.Hostname)
	}
	checkHostPort(c, "relay.listen", r.Listen)
	if *r.STUNListen != "" {
		checkHostPort(c, "relay.stun_listen", *r.STUNListen)
	}
	if r.Region.ID < 1 || r.Region.ID > 1<<20 {
		c.add("relay.region.id", "must be a positive region ID (900-999 are reserved for self-hosted regions), got %d", r.Region.ID)
	}
	oneOf(c, "relay.tls.mode", r.TLS.Mode, "acme", "manual", "self-signed")
	switch r.TLS.Mode {
	case "manual":
		for key, f := range map[string]string{"relay.tls.cert_file": r.TLS.CertFile, "relay.tls.key_file": r.TLS.KeyFile} {
			if f == "" {
				c.add(key, "required when relay.tls.mode is manual")
			} else if _, err := os.Stat(f); err != nil {
				c.add(key, "cannot read %q: %v", f, errors.Unwrap(err))
			}
		}
	case "acme":
		if cfg.ACME == nil || !On(cfg.ACME.Enabled, true) {
			c.add("relay.tls.mode", "acme needs an enabled acme section")
		}
		if r.Hostname == "" || net.ParseIP(r.Hostname) != nil {
			c.add("relay.hostname", "acme mode needs a DNS name (IP-only relays use self-signed)")
		}
	}
	if u := r.VerifyClients.URL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			c.add("relay.verify_clients.url", "expected an http(s) URL, got %q", u)
		}
	}
	for i, k := range r.VerifyClients.Allow {
		if !validNodeKey(k) {
			c.add(fmt.Sprintf("relay.verify_clients.allow[%d]", i), "expected nodekey: followed by 64 hex digits, got %q", k)
		}
	}
	if len(r.Mesh.Peers) > 0 && r.Mesh.KeyFile == "" {
		c.add("relay.mesh.key_file", "required when relay.mesh.peers is set")
	}
	for key, v := range map[string]string{"relay.ipv4": r.IPv4, "relay.ipv6": r.IPv6} {
		if v != "" && v != "none" && net.ParseIP(v) == nil {
			c.add(key, "expected an IP address or \"none\", got %q", v)
		}
	}
	if r.QueueDepth < 1 || r.QueueDepth > 4096 {
		c.add("relay.queue_depth", "must be between 1 and 4096, got %d", r.QueueDepth)
	}
	if r.KeepAlive.D() < time.Second || r.KeepAlive.D() > 100*time.Second {
		c.add("relay.keepalive", "must be between 1s and 100s (clients give up after 120s), got %s", r.KeepAlive.D())
	}
}

// STUNAddr is the STUN listen address, "" when STUN is off.
func (r *Relay) STUNAddr() string {
	if r.STUNListen == nil {
		return ""
	}
	return *r.STUNListen
}

func validNodeKey(s string) bool {
	h, ok := strings.CutPrefix(s, "nodekey:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}
