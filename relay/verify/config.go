package verify

import "github.com/edgerelay/edgerelay/agent/field"

// Config is the relay.verify_clients section: the admission checks, of which one saying
// yes admits a client. With none configured, a relay reachable beyond loopback asks the
// local tailscaled found at the usual socket paths, and refuses every client while there is
// none; Open admits everyone instead (an open relay, chosen explicitly).
type Config struct {
	TailscaledSocket string   `yaml:"tailscaled_socket"` // ask the tailscaled at this socket
	URL              string   `yaml:"url"`               // admission URL (headscale's /verify)
	FailOpen         bool     `yaml:"fail_open"`         // admit when the URL cannot be reached
	Allow            []string `yaml:"allow"`             // node keys always admitted (nodekey:…)
	Open             bool     `yaml:"open"`              // admit anyone
}

// Configured reports whether a check is configured (tailscaled_socket, url or allow).
func (c Config) Configured() bool {
	return c.TailscaledSocket != "" || c.URL != "" || len(c.Allow) > 0
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	if c.URL != "" && !field.IsURL(c.URL, "http", "https") {
		ps.Add("url", "expected an http(s) URL, got %q", c.URL)
	}
	for i, k := range c.Allow {
		if _, err := ParseNodeKey(k); err != nil {
			ps.Add(field.Index("allow", i), "expected nodekey: followed by 64 hex digits, got %q", k)
		}
	}
	if c.Open && c.Configured() {
		ps.Add("open", "admits everyone, so tailscaled_socket, url and allow would never refuse anyone: remove open or the checks")
	}
	return ps.Err()
}
