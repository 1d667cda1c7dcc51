// Package config defines edgerelay's configuration: one struct tree decoded from a YAML file
// or an OpenWrt UCI file, filled with defaults, and checked by one validation pass that
// reports every problem with its key path and source line.
package config

import (
	"time"
)

// Default file locations searched by `run` when no -c is given, in order.
var DefaultPaths = []string{"/etc/config/edgerelay", "/etc/edgerelay/config.yaml"}

// Config is the whole configuration. YAML keys are the yaml tags; UCI sections are named
// after the top-level keys (see uci.go for the mapping).
type Config struct {
	StateDir      string `yaml:"state_dir"`
	LogLevel      string `yaml:"log_level"`
	MetricsListen string `yaml:"metrics_listen"` // opt-in Prometheus listener, e.g. 127.0.0.1:9100

	Relay  Relay   `yaml:"relay"`
	DDNS   *DDNS   `yaml:"ddns"`   // nil: section absent, part off
	ACME   *ACME   `yaml:"acme"`   // nil: section absent, part off
	Subnet *Subnet `yaml:"subnet"` // nil: section absent, part off

	// Source is the file the config came from ("" for the embedded default).
	Source string `yaml:"-"`
}

// Duration is a time.Duration written as "10s", "2m" in files.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// On reports whether an optional boolean is set and true, with def used when unset.
func On(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}
