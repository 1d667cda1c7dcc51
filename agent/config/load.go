package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Load reads a YAML or UCI file, applies defaults and validates it. On any problem it returns
// Problems listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data, isUCI(path, data))
	if cfg != nil {
		cfg.Source = path
	}
	return cfg, err
}

// Parse decodes YAML (or UCI when uci is set), applies defaults and validates.
func Parse(data []byte, uci bool) (*Config, error) {
	c := &checker{lines: map[string]int{}}
	var root *node
	if uci {
		secs, err := parseUCI(data)
		if err != nil {
			return nil, Problems{{Path: "uci", Msg: err.Error()}}
		}
		root = uciTree(secs, c)
	} else {
		var err error
		if root, err = parseYAML(data); err != nil {
			return nil, Problems{{Path: "yaml", Msg: err.Error()}}
		}
	}
	cfg := &Config{UCI: uci}
	decode(root, reflect.ValueOf(cfg).Elem(), "", c)
	cfg.readSecrets(c)
	cfg.setDefaults()
	cfg.check(c)
	if len(c.probs) > 0 {
		// In file order; problems without a line (defaults, cross-key) last.
		sort.SliceStable(c.probs, func(i, j int) bool {
			li, lj := c.probs[i].Line, c.probs[j].Line
			return li != 0 && (lj == 0 || li < lj)
		})
		return cfg, c.probs
	}
	return cfg, nil
}

// Default is the embedded configuration used when no file exists: the relay and STUN on
// loopback with a self-signed certificate, nothing else.
func Default() *Config {
	cfg, err := Parse([]byte(defaultYAML), false)
	if err != nil {
		panic("config: embedded default is invalid: " + err.Error())
	}
	return cfg
}

const defaultYAML = `
relay:
  listen: "127.0.0.1:12345"
  stun_listen: "127.0.0.1:3478"
  hostname: "127.0.0.1"
  tls: {mode: self-signed}
`

// isUCI tells UCI from YAML: a .yaml/.yml/.json name is YAML, a file in OpenWrt's
// /etc/config is UCI, else the first command word decides (after comments and a byte order
// mark, so that a file whose first section is commented out still gets UCI's errors).
func isUCI(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return false
	}
	if filepath.Dir(path) == "/etc/config" {
		return true
	}
	for _, line := range bytes.Split(bytes.TrimPrefix(data, utf8BOM), []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || f[0][0] == '#' {
			continue
		}
		switch string(f[0]) {
		case "config", "c", "package", "p", "option", "o", "list", "l":
			return true
		}
		return false
	}
	return false
}

// setDefaults fills every unset key with its documented default. state_dir defaults to
// $EDGERELAY_STATE_DIR, else /var/lib/edgerelay (root) or the user's config dir.
func (cfg *Config) setDefaults() {
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/edgerelay"
		if d := os.Getenv("EDGERELAY_STATE_DIR"); d != "" {
			cfg.StateDir = d
		} else if os.Geteuid() != 0 {
			if d, err := os.UserConfigDir(); err == nil {
				cfg.StateDir = filepath.Join(d, "edgerelay")
			}
		}
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	cfg.defaultsBefore()
	for _, s := range cfg.sections() {
		s.part.SetDefaults()
	}
	cfg.defaultsAfter()
}

func (cfg *Config) check(c *checker) {
	var top field.Problems
	if !filepath.IsAbs(cfg.StateDir) {
		top.Add("state_dir", "must be an absolute path, got %q", cfg.StateDir)
	}
	top.OneOf("log_level", cfg.LogLevel, "debug", "info", "warn", "error")
	if cfg.MetricsListen != "" {
		top.HostPort("metrics_listen", cfg.MetricsListen)
	}
	c.merge("", top.Err())
	for _, s := range cfg.sections() {
		if s.on {
			c.merge(s.key, s.part.Validate())
		}
	}
	cfg.checkAcross(c)
}
