package relay

import (
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/verify"
)

// Config is the relay section: the DERP and STUN servers, their certificate, who they
// admit, the region they belong to and the limits that keep a small box standing.
type Config struct {
	Hostname      string        `yaml:"hostname"`    // DNS name, or an IP for IP-only mode ("": this box's public address)
	Listen        string        `yaml:"listen"`      // DERP over HTTPS
	STUNListen    *string       `yaml:"stun_listen"` // nil: default; "" or "off": STUN off
	Region        Region        `yaml:"region"`
	TLS           TLS           `yaml:"tls"`
	VerifyClients verify.Config `yaml:"verify_clients"`
	Mesh          Mesh          `yaml:"mesh"`
	// IPv4 and IPv6 override the addresses published in the DERP map ("none" hides a family).
	IPv4 string `yaml:"ipv4"`
	IPv6 string `yaml:"ipv6"`
	// KeepAlive is the interval between KeepAlive frames (clients time out after 120 s).
	KeepAlive time.Duration `yaml:"keepalive"`
	// WriteTimeout drops a client whose socket does not take a frame in this time (a stuck
	// write fails after between three quarters of it and all of it: see derp's sender).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// HandshakeTimeout bounds the upgrade and the DERP handshake.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
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
	TCPKeepAlive   time.Duration `yaml:"tcp_keepalive"`
	TCPUserTimeout time.Duration `yaml:"tcp_user_timeout"`
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
	// Key is shared by every relay of the region: 64 hex digits (the loader reads KeyFile
	// into it).
	Key     string   `yaml:"key"`
	KeyFile string   `yaml:"key_file"`
	Peers   []string `yaml:"peers"` // host, host:port (default: our DERP port) or https URL
	// Peers' certificates are checked against the system roots plus CAFile, or, when Pins
	// are given (self-signed peers), against Pins[i] for Peers[i] (sha256-raw:…, as the
	// peer's `edgerelay derpmap` prints it).
	CAFile string   `yaml:"ca_file"`
	Pins   []string `yaml:"pins"`
}

// TLS modes.
const (
	TLSACME       = "acme"
	TLSManual     = "manual"
	TLSSelfSigned = "self-signed"
)

// SetDefaults fills unset keys with their documented defaults. tls.mode defaults to
// self-signed (the agent sets acme first when the acme section is on).
func (c *Config) SetDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Listen == "" {
		c.Listen = ":12345"
	}
	if c.STUNListen == nil {
		s := ":3478"
		c.STUNListen = &s
	}
	def(&c.Region.ID, 900)
	if c.Region.Code == "" {
		c.Region.Code = "home"
	}
	if c.Region.Name == "" {
		c.Region.Name = "Home"
	}
	if c.TLS.Mode == "" {
		c.TLS.Mode = TLSSelfSigned
	}
	defD(&c.KeepAlive, 60*time.Second)
	defD(&c.WriteTimeout, 2*time.Second)
	defD(&c.HandshakeTimeout, 10*time.Second)
	def(&c.QueueDepth, 32)
	def(&c.MaxClients, 1000) // safe for a 128 MB router: 1,000 clients fit in about 40 MB
	def(&c.AcceptRate, 100)
	def(&c.AcceptBurst, 2*c.AcceptRate)
	def(&c.MaxPending, 128) // a few kilobytes each: the pool costs a few megabytes when full
	def(&c.MaxPendingPerSource, 16)
	def(&c.AcceptRatePerSource, 20)
	def(&c.AcceptBurstPerSource, 2*c.AcceptRatePerSource)
	if c.ClientRate > 0 {
		def(&c.ClientBurst, max(c.ClientRate, derp.MaxPacketSize+32)) // at least one largest packet
	}
	defD(&c.TCPKeepAlive, 10*time.Minute)
	defD(&c.TCPUserTimeout, 15*time.Second)
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	if c.Hostname != "" && !field.IsHost(c.Hostname) {
		ps.Add("hostname", "%q is neither a DNS name nor an IP address", c.Hostname)
	}
	ps.HostPort("listen", c.Listen)
	if s := c.STUNAddr(); s != "" {
		ps.HostPort("stun_listen", s)
	}
	if c.Region.ID < 1 || c.Region.ID > 1<<20 {
		ps.Add("region.id", "must be a positive region ID (900-999 are reserved for self-hosted regions), got %d", c.Region.ID)
	}
	ps.OneOf("tls.mode", c.TLS.Mode, TLSACME, TLSManual, TLSSelfSigned)
	switch c.TLS.Mode {
	case TLSManual:
		for i, f := range [2]string{c.TLS.CertFile, c.TLS.KeyFile} {
			key := [2]string{"tls.cert_file", "tls.key_file"}[i]
			if f == "" {
				ps.Add(key, "required when relay.tls.mode is manual")
			} else if _, err := os.Stat(f); err != nil {
				ps.Add(key, "cannot read %q: %v", f, errors.Unwrap(err))
			}
		}
	case TLSACME:
		if c.Hostname == "" || net.ParseIP(c.Hostname) != nil {
			ps.Add("hostname", "acme mode needs a DNS name (IP-only relays use self-signed)")
		}
	}
	ps.Merge("verify_clients", c.VerifyClients.Validate())
	switch h := c.Home; h {
	case "", "blank", "default":
	default:
		if !field.IsURL(h, "http", "https") {
			ps.Add("home", "expected blank, default or an http(s) URL to redirect to, got %q", h)
		}
	}
	c.Mesh.validate(&ps)
	for i, v := range [2]string{c.IPv4, c.IPv6} {
		if v != "" && v != "none" && net.ParseIP(v) == nil {
			ps.Add([2]string{"ipv4", "ipv6"}[i], "expected an IP address or \"none\", got %q", v)
		}
	}
	c.validateLimits(&ps)
	return ps.Err()
}

func (m *Mesh) validate(ps *field.Problems) {
	switch {
	case m.Key != "":
		if k := strings.TrimSpace(m.Key); len(k) != 64 || !isHex(k) {
			if m.KeyFile != "" {
				ps.Add("mesh.key_file", "%s must hold 64 hex digits", m.KeyFile)
			} else {
				ps.Add("mesh.key", "must be 64 hex digits")
			}
		}
	case len(m.Peers) > 0 && m.KeyFile == "":
		ps.Add("mesh.key_file", "required when relay.mesh.peers is set")
	}
	if len(m.Pins) > 0 && len(m.Pins) != len(m.Peers) {
		ps.Add("mesh.pins", "one pin per peer, in the order of relay.mesh.peers (%d pins, %d peers)", len(m.Pins), len(m.Peers))
	}
	for i, p := range m.Pins {
		if h, ok := strings.CutPrefix(p, "sha256-raw:"); !ok || len(h) != 64 || !isHex(h) {
			ps.Add(field.Index("mesh.pins", i), "expected sha256-raw: followed by 64 hex digits, got %q", p)
		}
	}
}

// validateLimits checks the tuning that maps onto derp.Options and the admission limits.
func (c *Config) validateLimits(ps *field.Problems) {
	if c.QueueDepth < 1 || c.QueueDepth > 4096 {
		ps.Add("queue_depth", "must be between 1 and 4096, got %d", c.QueueDepth)
	}
	counts := []int{c.MaxClients, c.AcceptRate, c.AcceptBurst, c.ClientRate, c.ClientBurst,
		c.MaxPending, c.MaxPendingPerSource, c.AcceptRatePerSource, c.AcceptBurstPerSource}
	for i, key := range strings.Fields("max_clients accept_rate accept_burst client_rate client_burst " +
		"max_pending max_pending_per_source accept_rate_per_source accept_burst_per_source") {
		if counts[i] < 0 {
			ps.Add(key, "must not be negative, got %d", counts[i])
		}
	}
	if c.MaxPendingPerSource > c.MaxPending {
		ps.Add("max_pending_per_source", "must not exceed max_pending (%d), got %d", c.MaxPending, c.MaxPendingPerSource)
	}
	if c.QueueBytes != 0 && c.QueueBytes < derp.MaxPacketSize {
		ps.Add("queue_bytes", "must hold at least one largest packet (%d bytes), got %d", derp.MaxPacketSize, c.QueueBytes)
	}
	if c.QueueBytesTotal != 0 && c.QueueBytesTotal < max(c.QueueBytes, derp.MaxPacketSize) {
		ps.Add("queue_bytes_total", "must hold at least one client's queue_bytes (%d), got %d", max(c.QueueBytes, derp.MaxPacketSize), c.QueueBytesTotal)
	}
	if c.ClientRate > 0 && c.ClientBurst < derp.MaxPacketSize+32 {
		ps.Add("client_burst", "must hold at least one largest packet (%d bytes), got %d", derp.MaxPacketSize+32, c.ClientBurst)
	}
	if c.KeepAlive < time.Second || c.KeepAlive > 100*time.Second {
		ps.Add("keepalive", "must be between 1s and 100s (clients give up after 120s), got %s", c.KeepAlive)
	}
}

// derpOptions is the tuning of the DERP server.
func (c *Config) derpOptions() derp.Options {
	return derp.Options{
		KeepAlive:        c.KeepAlive,
		WriteTimeout:     c.WriteTimeout,
		HandshakeTimeout: c.HandshakeTimeout,
		QueueDepth:       c.QueueDepth,
		QueueBytes:       int64(c.QueueBytes),
		QueueBytesTotal:  int64(c.QueueBytesTotal),
		ClientRate:       c.ClientRate,
		ClientBurst:      c.ClientBurst,
		MaxClients:       c.MaxClients,
	}
}

// STUNAddr is the STUN listen address, "" when STUN is off. "off" exists because UCI
// cannot hold an empty option (setting one deletes it, and the default comes back).
func (c *Config) STUNAddr() string {
	if c.STUNListen == nil || *c.STUNListen == "off" {
		return ""
	}
	return *c.STUNListen
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// MeshSTUNServers are the STUN servers of the region's other relays (mesh.peers, at this
// relay's STUN port: the region's relays are set up alike), for ddns's stun: auto.
func (c *Config) MeshSTUNServers() []string {
	port := "3478"
	if s := c.STUNAddr(); s != "" {
		if _, p, err := net.SplitHostPort(s); err == nil && p != "" && p != "0" {
			port = p
		}
	}
	var out []string
	for _, peer := range c.Mesh.Peers {
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
