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

	"github.com/edgerelay/edgerelay/relay/verify"
)

// Relay configures the DERP and STUN servers.
type Relay struct {
	Enabled       *bool         `yaml:"enabled"`
	Hostname      string        `yaml:"hostname"`
	Listen        string        `yaml:"listen"`
	STUNListen    *string       `yaml:"stun_listen"` // nil: default; "": STUN off
	Region        Region        `yaml:"region"`
	TLS           TLS           `yaml:"tls"`
	VerifyClients verify.Config `yaml:"verify_clients"`
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
	// QueueBytes bounds one client's queues in bytes (0: two full queues of ordinary
	// packets, 128 KiB at the default depth); QueueBytesTotal bounds all queues together
	// (0: an eighth of GOMEMLIMIT, else of a quarter of the RAM, 1-64 MiB).
	QueueBytes      int `yaml:"queue_bytes"`
	QueueBytesTotal int `yaml:"queue_bytes_total"`
	// MaxClients caps authenticated client connections (0 = no cap); more are refused after
	// the handshake. Mesh peers do not count. Connections not yet authenticated never take
	// these places: they have a pool of their own, MaxPending (at most MaxPendingPerSource
	// from one address, or one IPv6 /64), which a newcomer may take over from the address
	// holding the most.
	MaxClients          int `yaml:"max_clients"`
	MaxPending          int `yaml:"max_pending"`
	MaxPendingPerSource int `yaml:"max_pending_per_source"`
	// AcceptRate limits new connections per second, with AcceptBurst; per source address,
	// AcceptRatePerSource with AcceptBurstPerSource. Mesh peers are exempt.
	AcceptRate           int `yaml:"accept_rate"`
	AcceptBurst          int `yaml:"accept_burst"`
	AcceptRatePerSource  int `yaml:"accept_rate_per_source"`
	AcceptBurstPerSource int `yaml:"accept_burst_per_source"`
	// ClientRate limits what one client may send, in bytes per second, with ClientBurst
	// (0 = unlimited). Clients learn it from ServerInfo and pace themselves; mesh peers are
	// exempt.
	ClientRate  int `yaml:"client_rate"`
	ClientBurst int `yaml:"client_burst"`
	// TCPKeepAlive is the idle time before TCP keepalive probes; TCPUserTimeout drops a
	// connection whose sent data stays unacknowledged this long (dead peers).
	TCPKeepAlive   Duration `yaml:"tcp_keepalive"`
	TCPUserTimeout Duration `yaml:"tcp_user_timeout"`
	// Home is what GET / on the DERP port shows: blank (an empty page), default (a short
	// page naming neither product nor version) or an http(s) URL to redirect to. Unset:
	// blank, or default on a loopback-only listener.
	Home string `yaml:"home"`
	// LiveMap serves this region as DERP map JSON at /derpmap.json on the DERP port, kept
	// current as the addresses change (headscale's derp.urls). Default on.
	LiveMap *bool `yaml:"live_map"`
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

// Mesh joins several relays into one region.
type Mesh struct {
	KeyFile string   `yaml:"key_file"` // 64 hex digits, shared by every relay of the region
	Peers   []string `yaml:"peers"`    // host, host:port (default: our DERP port) or https URL
	// Peers' certificates are checked against the system roots plus CAFile, or, when Pins
	// are given (self-signed peers), against Pins[i] for Peers[i] (sha256-raw:…, as the
	// peer's `edgerelay derpmap` prints it).
	CAFile string   `yaml:"ca_file"`
	Pins   []string `yaml:"pins"`
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
	// Safe for a 128 MB router: 1,000 clients fit in about 40 MB.
	if r.MaxClients == 0 {
		r.MaxClients = 1000
	}
	if r.AcceptRate == 0 {
		r.AcceptRate = 100
	}
	if r.AcceptBurst == 0 {
		r.AcceptBurst = 2 * r.AcceptRate
	}
	// A few kilobytes each: the pool costs a few megabytes when full.
	if r.MaxPending == 0 {
		r.MaxPending = 128
	}
	if r.MaxPendingPerSource == 0 {
		r.MaxPendingPerSource = 16
	}
	if r.AcceptRatePerSource == 0 {
		r.AcceptRatePerSource = 20
	}
	if r.AcceptBurstPerSource == 0 {
		r.AcceptBurstPerSource = 2 * r.AcceptRatePerSource
	}
	if r.ClientRate > 0 && r.ClientBurst == 0 {
		r.ClientBurst = max(r.ClientRate, 65536+32) // at least one largest packet
	}
	if r.TCPKeepAlive == 0 {
		r.TCPKeepAlive = Duration(10 * time.Minute)
	}
	if r.TCPUserTimeout == 0 {
		r.TCPUserTimeout = Duration(15 * time.Second)
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
	c.merge("relay.verify_clients", r.VerifyClients.Validate())
	switch h := r.Home; h {
	case "", "blank", "default":
	default:
		if p, err := url.Parse(h); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			c.add("relay.home", "expected blank, default or an http(s) URL to redirect to, got %q", h)
		}
	}
	if len(r.Mesh.Peers) > 0 && r.Mesh.KeyFile == "" {
		c.add("relay.mesh.key_file", "required when relay.mesh.peers is set")
	}
	if r.Mesh.KeyFile != "" {
		if b, err := os.ReadFile(r.Mesh.KeyFile); err != nil {
			c.add("relay.mesh.key_file", "cannot read %q: %v", r.Mesh.KeyFile, errors.Unwrap(err))
		} else if k := strings.TrimSpace(string(b)); len(k) != 64 || !isHex(k) {
			c.add("relay.mesh.key_file", "%s must hold 64 hex digits", r.Mesh.KeyFile)
		}
	}
	if len(r.Mesh.Pins) > 0 && len(r.Mesh.Pins) != len(r.Mesh.Peers) {
		c.add("relay.mesh.pins", "one pin per peer, in the order of relay.mesh.peers (%d pins, %d peers)", len(r.Mesh.Pins), len(r.Mesh.Peers))
	}
	for i, p := range r.Mesh.Pins {
		if h, ok := strings.CutPrefix(p, "sha256-raw:"); !ok || len(h) != 64 || !isHex(h) {
			c.add(fmt.Sprintf("relay.mesh.pins[%d]", i), "expected sha256-raw: followed by 64 hex digits, got %q", p)
		}
	}
	for key, v := range map[string]string{"relay.ipv4": r.IPv4, "relay.ipv6": r.IPv6} {
		if v != "" && v != "none" && net.ParseIP(v) == nil {
			c.add(key, "expected an IP address or \"none\", got %q", v)
		}
	}
	if r.QueueDepth < 1 || r.QueueDepth > 4096 {
		c.add("relay.queue_depth", "must be between 1 and 4096, got %d", r.QueueDepth)
	}
	for key, v := range map[string]int{"relay.max_clients": r.MaxClients, "relay.accept_rate": r.AcceptRate,
		"relay.accept_burst": r.AcceptBurst, "relay.client_rate": r.ClientRate, "relay.client_burst": r.ClientBurst,
		"relay.max_pending": r.MaxPending, "relay.max_pending_per_source": r.MaxPendingPerSource,
		"relay.accept_rate_per_source": r.AcceptRatePerSource, "relay.accept_burst_per_source": r.AcceptBurstPerSource} {
		if v < 0 {
			c.add(key, "must not be negative, got %d", v)
		}
	}
	if r.MaxPendingPerSource > r.MaxPending {
		c.add("relay.max_pending_per_source", "must not exceed max_pending (%d), got %d", r.MaxPending, r.MaxPendingPerSource)
	}
	if r.QueueBytes != 0 && r.QueueBytes < 65536 {
		c.add("relay.queue_bytes", "must hold at least one largest packet (65536 bytes), got %d", r.QueueBytes)
	}
	if r.QueueBytesTotal != 0 && r.QueueBytesTotal < max(r.QueueBytes, 65536) {
		c.add("relay.queue_bytes_total", "must hold at least one client's queue_bytes (%d), got %d", max(r.QueueBytes, 65536), r.QueueBytesTotal)
	}
	if r.ClientRate > 0 && r.ClientBurst < 65536+32 {
		c.add("relay.client_burst", "must hold at least one largest packet (65568 bytes), got %d", r.ClientBurst)
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

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// MeshSTUNServers are the STUN servers of the region's other relays (relay.mesh.peers, at
// this relay's STUN port: the region's relays are set up alike), for ddns's stun: auto.
func (r Relay) MeshSTUNServers() []string {
	port := "3478"
	if s := r.STUNAddr(); s != "" {
		if _, p, err := net.SplitHostPort(s); err == nil && p != "" && p != "0" {
			port = p
		}
	}
	var out []string
	for _, peer := range r.Mesh.Peers {
		host := peer
		if u, err := url.Parse(peer); err == nil && u.Host != "" {
			host = u.Hostname()
		} else if h, _, err := net.SplitHostPort(peer); err == nil {
			host = h
		}
		if host != "" {
			out = append(out, net.JoinHostPort(host, port))
		}
	}
	return out
}
