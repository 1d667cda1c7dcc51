package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Setting is one option the web page offers: the options of the LuCI page that are plain
// values (providers, records and secrets stay in the file). Key is its YAML path; the UCI
// option is the rest of the path joined with _ in the section named by its first part.
type Setting struct {
	Key     string   `json:"key"`
	Label   string   `json:"label"`
	Kind    string   `json:"kind"` // text | number | bool | list | choice
	Choices []string `json:"choices,omitempty"`
	// EmptyOff: "" is written as the value ("" turns the thing off) instead of removing
	// the key for its default.
	EmptyOff bool `json:"-"`
}

// Settings lists the options the web page offers, in the order it shows them.
var Settings = []Setting{
	{Key: "log_level", Label: "Log level", Kind: "choice", Choices: []string{"debug", "info", "warn", "error"}},
	{Key: "relay.enabled", Label: "Relay enabled", Kind: "bool"},
	{Key: "relay.hostname", Label: "Host name (or public IP)", Kind: "text"},
	{Key: "relay.listen", Label: "DERP listen address (TCP)", Kind: "text"},
	{Key: "relay.stun_listen", Label: "STUN listen address (UDP; empty: off)", Kind: "text", EmptyOff: true},
	{Key: "relay.region.id", Label: "Region ID (900-999)", Kind: "number"},
	{Key: "relay.region.code", Label: "Region code", Kind: "text"},
	{Key: "relay.region.name", Label: "Region name", Kind: "text"},
	{Key: "relay.tls.mode", Label: "Certificate", Kind: "choice", Choices: []string{"", "self-signed", "acme", "manual"}},
	{Key: "relay.tls.cert_file", Label: "Certificate file (manual)", Kind: "text"},
	{Key: "relay.tls.key_file", Label: "Key file (manual)", Kind: "text"},
	{Key: "relay.live_map", Label: "Live DERP map", Kind: "bool"},
	{Key: "relay.home", Label: "Home page (blank, default or a URL)", Kind: "text"},
	{Key: "relay.verify_clients.tailscaled_socket", Label: "Ask tailscaled at (socket)", Kind: "text"},
	{Key: "relay.verify_clients.url", Label: "Admission URL (headscale /verify)", Kind: "text"},
	{Key: "relay.verify_clients.fail_open", Label: "Admit when the check fails", Kind: "bool"},
	{Key: "relay.verify_clients.allow", Label: "Always admitted node keys", Kind: "list"},
	{Key: "relay.verify_clients.open", Label: "Open relay (anyone)", Kind: "bool"},
	{Key: "relay.max_clients", Label: "Max clients", Kind: "number"},
	{Key: "ddns.enabled", Label: "DDNS enabled", Kind: "bool"},
	{Key: "ddns.zone", Label: "Zone", Kind: "text"},
	{Key: "ddns.ttl", Label: "TTL", Kind: "number"},
	{Key: "acme.enabled", Label: "ACME enabled", Kind: "bool"},
	{Key: "acme.email", Label: "Account e-mail", Kind: "text"},
	{Key: "acme.domains", Label: "Domains", Kind: "list"},
	{Key: "acme.directory", Label: "ACME directory", Kind: "text"},
	{Key: "acme.profile", Label: "Certificate profile", Kind: "text"},
	{Key: "subnet.enabled", Label: "Subnet router enabled", Kind: "bool"},
	{Key: "subnet.routes", Label: "Routes (auto or CIDRs)", Kind: "list"},
	{Key: "subnet.lan_interfaces", Label: "LAN interfaces", Kind: "list"},
	{Key: "subnet.tailscale_interface", Label: "Tailscale interface", Kind: "text"},
	{Key: "subnet.snat", Label: "Masquerade tailnet traffic", Kind: "bool"},
	{Key: "subnet.mss_clamp", Label: "Clamp TCP MSS", Kind: "bool"},
	{Key: "subnet.firewall", Label: "Firewall", Kind: "choice", Choices: []string{"auto", "fw4", "iptables", "none"}},
	{Key: "subnet.advertise", Label: "Advertise routes to tailscaled", Kind: "bool"},
}

// Value is the setting's value in cfg as the page shows it: lists one item a line, bools
// true/false, a section's enabled true when the part runs.
func (cfg *Config) Value(s Setting) string {
	if sec, rest, _ := strings.Cut(s.Key, "."); rest == "enabled" {
		for _, x := range cfg.sections() {
			if x.key == sec {
				return strconv.FormatBool(x.on)
			}
		}
		return "false"
	}
	v := reflect.ValueOf(cfg)
	for _, p := range append(strings.Split(s.Key, "."), "") { // "": the value itself
		for v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Pointer { // nil: not set
			return ""
		}
		if p == "" {
			break
		}
		f, ok := yamlFields(v.Type())[p]
		if !ok {
			return ""
		}
		v = v.FieldByIndex(f.index)
	}
	if v.Kind() == reflect.Slice {
		items := make([]string, v.Len())
		for i := range items {
			items[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(items, "\n")
	}
	return fmt.Sprint(v.Interface())
}
