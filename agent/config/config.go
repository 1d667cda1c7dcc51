// Package config reads edgerelay's configuration from a YAML file or an OpenWrt UCI file.
// It defines no part's settings: each section is the part's own Config (relay.Config,
// ddns.Config, acme.Config, netfilter.Config, peerrelay.Config,
// notify.Config; sections.go) plus enabled.
// Loading decodes the file keeping every key's line, reads secrets given as files (x_file
// fills x), fills each part's defaults and the few a section takes from another
// (compose.go), and runs every part's Validate in one pass: all problems at once, each with
// its key path and line.
package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/edgerelay/edgerelay/web"
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
	// PeerRelay nil: section absent, part off (the default config has none).
	PeerRelay *PeerRelay `yaml:"peer_relay"`
	Notify    *Notify    `yaml:"notify"` // nil: section absent, no webhooks
	Web       web.Config `yaml:"web"`    // on when web.listen is set

	// Source is the file the config came from ("" for the embedded default).
	Source string `yaml:"-"`
	// UCI is set when the config was read from a UCI file.
	UCI bool `yaml:"-"`
}

// Line is how to write one setting (key a YAML path such as relay.verify_clients.url) in
// this config's own format, for messages that tell the user what to add: in a UCI file
// `option verify_clients_url '…'` (or `list …`) in `config relay`, in YAML the key under
// its section, e.g. `verify_clients: {url: "…"}` under `relay:`.
func (cfg *Config) Line(key, value string) string {
	parts := strings.Split(key, ".")
	if len(parts) < 2 {
		if cfg.UCI {
			return fmt.Sprintf("option %s '%s'   (in config edgerelay 'main')", key, value)
		}
		return fmt.Sprintf("%s: %s", key, value)
	}
	section, rest := parts[0], parts[1:]
	list := isListKey(key)
	if cfg.UCI {
		if value == "true" {
			value = "1"
		}
		kw := "option"
		if list {
			kw = "list"
		}
		return fmt.Sprintf("%s %s '%s'   (in config %s)", kw, strings.Join(rest, "_"), value, section)
	}
	v := strconv.Quote(value)
	if value == "true" || value == "false" {
		v = value
	}
	if list {
		v = "[" + v + "]"
	}
	inner := rest[len(rest)-1] + ": " + v
	for i := len(rest) - 2; i >= 0; i-- {
		inner = rest[i] + ": {" + inner + "}"
	}
	return fmt.Sprintf("%s   (under %s:)", inner, section)
}

// isListKey reports whether the YAML path names a list.
func isListKey(key string) bool {
	t := reflect.TypeOf(Config{})
	for _, p := range strings.Split(key, ".") {
		f, ok := yamlFields(t)[p]
		if !ok {
			return false
		}
		t = derefType(f.typ)
	}
	return t.Kind() == reflect.Slice
}

// On reports whether an optional boolean is set and true, with def used when unset.
func On(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}
