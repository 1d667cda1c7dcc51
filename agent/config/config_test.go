package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestUCIGrammar(t *testing.T) {
	src := `# comment line
package edgerelay
config relay 'relay' # trailing comment
	option hostname "derp."'example'.com
	option listen ':12345' ; option stun_listen ''
	o region_name 'Home
Lab'
	option region_code "a\"b\\c"
	list verify_clients_allow 'nodekey:` + strings.Repeat("ab", 32) + `'
	l verify_clients_allow nodekey:` + strings.Repeat("cd", 32) + `
c record
	option name derp
	option type AAAA
	option interface eth0.2
config record
	option name '@'
	option type A
	option value 203.0.113.9
`
	secs, err := parseUCI([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 3 || secs[0].typ != "relay" || secs[0].name != "relay" || secs[1].name != "" {
		t.Fatalf("sections %+v", secs)
	}
	opts := map[string][]string{}
	for _, o := range secs[0].opts {
		opts[o.name] = o.values
	}
	want := map[string][]string{
		"hostname":             {"derp.example.com"}, // pieces concatenate
		"listen":               {":12345"},
		"region_name":          {"Home\nLab"}, // single quotes span lines
		"region_code":          {`a"b\c`},
		"verify_clients_allow": {"nodekey:" + strings.Repeat("ab", 32), "nodekey:" + strings.Repeat("cd", 32)},
	}
	if !reflect.DeepEqual(opts, want) {
		t.Fatalf("options\n got %q\nwant %q", opts, want)
	}
	if secs[0].opts[2].line != 5 && secs[0].opts[1].line != 5 {
		t.Errorf("line numbers off: %+v", secs[0].opts)
	}
	cfg, err := Parse([]byte(src+"config ddns\n\toption provider_type rfc2136\n\toption provider_server ns:53\n\toption provider_key_name k.\n\toption provider_key eA==\n\toption zone example.com\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Hostname != "derp.example.com" || cfg.Relay.STUNAddr() != ":3478" || len(cfg.DDNS.Records) != 2 ||
		cfg.DDNS.Records[0].Interface != "eth0.2" || cfg.DDNS.Records[1].Value != "203.0.113.9" {
		t.Fatalf("decoded %+v / %+v", cfg.Relay, cfg.DDNS)
	}
}

func TestUCIErrors(t *testing.T) {
	for src, want := range map[string]string{
		"option x 1\n":                           "before the first section",
		"config relay\n\toption 'bad name' 1\n":  "letters, digits",
		"config relay\n\toption x 'unterminated": "unterminated single quote",
		"config relay\n\toption x \"open":        "unterminated double quote",
		"bogus relay\n":                          "unknown command",
		"config relay 'bad-name'\n":              "invalid section name",
		// libuci (strict, its default) refuses extra words rather than reading the first.
		"config relay\n\toption region_name My Home\n": "line 2: too many arguments to option region_name (\"Home\"): quote a value with spaces, as in option region_name 'My Home'",
		"config relay main extra\n":                    "line 1: too many arguments to config",
		"config relay\n\tlist mesh_peers a b\n":        "too many arguments to list mesh_peers",
		"package edgerelay x\n":                        "too many arguments to package",
		"\xef\xbb\xbfconfig relay\n":                   "line 1: the file starts with a UTF-8 byte order mark",
		"config relay 'x'\nconfig ddns 'x'\n":          "line 2: section \"x\" of type ddns overwrites the relay section of that name at line 1",
	} {
		_, err := Parse([]byte(src), true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}

// A section name seen before continues that section (uci merges them); an empty option
// deletes an earlier value; two unnamed sections of a single-instance type are reported.
func TestUCIMergesAsLibuci(t *testing.T) {
	src := `config relay 'relay'
	option listen ':1'
	option hostname 'a.example.com'
config record 'r1'
	option name derp
	option type AAAA
config ddns
	option provider_type cloudflare
	option provider_api_token t
	option zone example.com
config relay 'relay'
	option listen ':2'
	option hostname ''
config record 'r1'
	option interface eth0
`
	cfg, err := Parse([]byte(src), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Listen != ":2" || cfg.Relay.Hostname != "" {
		t.Errorf("merged relay: listen %q hostname %q, want :2 and unset", cfg.Relay.Listen, cfg.Relay.Hostname)
	}
	if rs := cfg.DDNS.Records; len(rs) != 1 || rs[0].Name != "derp" || rs[0].Interface != "eth0" {
		t.Errorf("record r1 not merged into one: %+v", rs)
	}
	_, err = Parse([]byte("config relay\n\toption listen ':1'\nconfig relay\n\toption listen ':2'\n"), true)
	if err == nil || !strings.Contains(err.Error(), "line 3: config relay: section appears twice (first at line 1)") {
		t.Errorf("two unnamed relay sections: %v", err)
	}
}

// Every problem is reported at once, each with its key path and line, in both formats.
func TestEveryProblemWithLine(t *testing.T) {
	yaml := `state_dir: relative/path
log_level: chatty
relay:
  listen: "nope"
  region: {id: -4}
  tls: {mode: letsencrypt}
  verify_clients:
    url: "ftp://x"
    allow: [nodekey:short]
  colour: blue
ddns:
  provider: {type: route53}
  zone: example.com
  records:
    - {name: derp, type: MX, interface: wan, value: 1.2.3.4}
subnet:
  routes: [10.0.0.0/33]
  firewall: pf
  rule_priority: 5210
acme:
  enabled: true
  dns_provider: {type: rfc2136, server: "ns:53", key_name: k., key: x, key_alg: hmac-sha3}
`
	_, err := Parse([]byte(yaml), false)
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("error %v is not Problems", err)
	}
	want := []string{
		"line 1: state_dir", "line 2: log_level", "line 4: relay.listen", "line 5: relay.region.id",
		"line 6: relay.tls.mode", "line 8: relay.verify_clients.url", "line 9: relay.verify_clients.allow[0]",
		"line 10: relay.colour: unknown key", "line 12: ddns.provider.type", "line 15: ddns.records[0].type",
		"line 15: ddns.records[0]: set exactly one address source", "line 17: subnet.routes[0]",
		"line 18: subnet.firewall", "line 19: subnet.rule_priority",
		`line 22: acme.dns_provider.key_alg: "hmac-sha3" is not one of`,
	}
	text := err.Error()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in:\n%s", w, text)
		}
	}
}

func TestDefaultsAndParts(t *testing.T) {
	cfg, err := Parse([]byte("relay: {hostname: derp.example.com}\nacme: {email: a@example.com, dns_provider: {type: cloudflare, api_token: t}}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.TLS.Mode != "acme" || cfg.ACME.Domains[0] != "derp.example.com" || cfg.DDNS != nil || cfg.Subnet != nil {
		t.Fatalf("defaults: %+v %+v", cfg.Relay.TLS, cfg.ACME)
	}
	if cfg.Relay.KeepAlive.Seconds() != 60 || cfg.Relay.QueueDepth != 32 || cfg.Relay.Region.ID != 900 {
		t.Fatalf("relay defaults %+v", cfg.Relay)
	}
	cfg, err = Parse([]byte("relay: {enabled: false}\nddns:\n  enabled: no\n"), false)
	if err != nil || On(cfg.Relay.Enabled, true) || On(cfg.DDNS.Enabled, true) {
		t.Fatalf("parts off: %v %+v", err, cfg)
	}
	if Default().Relay.TLS.Mode != "self-signed" {
		t.Fatal("the embedded default is not self-signed")
	}
}

func TestLoadDetectsFormat(t *testing.T) {
	dir := t.TempDir()
	uci := filepath.Join(dir, "edgerelay")
	os.WriteFile(uci, []byte("# c\nconfig relay 'relay'\n\toption listen ':1'\n"), 0o600)
	yml := filepath.Join(dir, "c.yaml")
	os.WriteFile(yml, []byte("relay:\n  listen: ':2'\n"), 0o600)
	a, err := Load(uci)
	if err != nil || a.Relay.Listen != ":1" {
		t.Fatalf("uci: %v", err)
	}
	b, err := Load(yml)
	if err != nil || b.Relay.Listen != ":2" || b.Source != yml {
		t.Fatalf("yaml: %v", err)
	}
	// A UCI file whose first section is commented out, or that starts with a byte order
	// mark, gets UCI's error with its line, not YAML's.
	for name, src := range map[string]string{
		"commented": "# config relay 'relay'\n\toption listen ':1'\n",
		"bom":       "\xef\xbb\xbfconfig relay 'relay'\n",
	} {
		f := filepath.Join(dir, name)
		os.WriteFile(f, []byte(src), 0o600)
		_, err := Load(f)
		if err == nil || !strings.Contains(err.Error(), "line ") || strings.Contains(err.Error(), "yaml") {
			t.Errorf("%s: error %v, want a UCI error with a line", name, err)
		}
	}
}

func FuzzUCI(f *testing.F) {
	f.Add([]byte("config relay 'relay'\n\toption listen ':12345'\n\tlist mesh_peers 'a' ; list mesh_peers b\n"))
	f.Add([]byte("c record\n\to name \"x\\\ny\"'z'\n# c\n"))
	f.Add([]byte("config edgerelay main\n\toption state_dir /etc/edgerelay\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b, true) // must not panic; problems are errors
	})
}

func FuzzYAML(f *testing.F) {
	f.Add([]byte("relay:\n  listen: ':1'\n  region: {id: 901}\nddns:\n  records: [{name: a, type: A, value: 1.2.3.4}]\n"))
	f.Add([]byte("relay: [1, 2]\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b, false)
	})
}

// The keys for DNSPod, LAN hosts, STUN sources and ACME profiles: each mistake reported with
// its key and line, and the same keys read from UCI.
func TestLANHostSTUNProfileKeys(t *testing.T) {
	yaml := `ddns:
  provider: {type: tencentcloud, secret_key: x}
  zone: example.com
  records:
    - {name: a, type: AAAA, interface: br-lan, suffix: "2001:db8::1234"}
    - {name: b, type: AAAA, interface: br-lan, mac: "aa:bb:cc"}
    - {name: c, type: A, interface: br-lan, suffix: "::1"}
    - {name: d, type: AAAA, interface: br-lan, suffix: "::1", mac: "aa:bb:cc:dd:ee:ff"}
    - {name: e, type: A, stun: auto}
    - {name: f, type: A, stun: ":3478"}
    - {name: g, type: A, stun: "stun.example.net", url: "https://x"}
    - {name: h, type: AAAA, interface: br-lan, suffix: "::"}
acme:
  email: a@example.com
  profile: "short lived"
`
	_, err := Parse([]byte(yaml), false)
	want := []string{
		"line 2: ddns.provider.secret_id: required for tencentcloud",
		`line 5: ddns.records[0].suffix: "2001:db8::1234" sets prefix bits`,
		`line 6: ddns.records[1].mac: "aa:bb:cc" is not a 48-bit MAC`,
		"line 7: ddns.records[2]: suffix and mac make an AAAA record",
		"line 8: ddns.records[3]: set suffix or mac, not both",
		"line 9: ddns.records[4].stun: auto asks the STUN servers of relay.mesh.peers, and there are none",
		`line 10: ddns.records[5].stun: ":3478" names no host`,
		"line 11: ddns.records[6]: set exactly one address source: interface, url, stun or value",
		`line 12: ddns.records[7].suffix: "::" is all zeros`,
		`line 15: acme.profile: "short lived" is not a profile name`,
	}
	if err == nil {
		t.Fatal("no problems found")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}

	keyFile := filepath.Join(t.TempDir(), "mesh.key")
	os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	dnspodKey := filepath.Join(t.TempDir(), "dnspod.key")
	os.WriteFile(dnspodKey, []byte("s3cret\n"), 0o600)
	uci := `config relay
	option hostname derp.example.com
	list mesh_peers 'https://derp2.example.com:8443'
	option mesh_key_file '` + keyFile + `'
config ddns
	option provider_type dnspod
	option provider_secret_id AKIDx
	option provider_secret_key_file ` + dnspodKey + `
	option zone example.com
config record
	option name nas
	option type AAAA
	option interface br-lan
	option suffix '::1234'
config record
	option name cam
	option type AAAA
	option interface br-lan
	option mac 'aa:bb:cc:dd:ee:ff'
config record
	option name home
	option type A
	option stun auto
config acme
	option email a@example.com
	option profile shortlived
`
	cfg, err := Parse([]byte(uci), true)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.DDNS.Records
	if cfg.DDNS.Provider.SecretID != "AKIDx" || cfg.DDNS.Provider.SecretKeyFile != dnspodKey || cfg.DDNS.Provider.SecretKey != "s3cret" ||
		r[0].Suffix != "::1234" || r[1].MAC != "aa:bb:cc:dd:ee:ff" || r[2].STUN != "auto" || cfg.ACME.Profile != "shortlived" {
		t.Fatalf("decoded %+v %+v %+v", cfg.DDNS.Provider, r, cfg.ACME)
	}
	if got := cfg.Relay.MeshSTUNServers(); len(got) != 1 || got[0] != "derp2.example.com:3478" {
		t.Errorf("mesh STUN servers %v", got)
	}
}

// TestClosedDefaultOptions: verify_clients.open, relay.home, relay.live_map and the free
// DNS providers are read from both formats and checked.
func TestClosedDefaultOptions(t *testing.T) {
	cfg, err := Parse([]byte("config relay 'relay'\n\toption verify_clients_open '1'\n\toption home 'https://example.com/'\n\toption live_map '0'\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Relay.VerifyClients.Open || cfg.Relay.VerifyClients.Configured() || cfg.Relay.Home != "https://example.com/" || On(cfg.Relay.LiveMap, true) {
		t.Fatalf("relay %+v", cfg.Relay)
	}
	for src, want := range map[string]string{
		"relay: {verify_clients: {open: true, allow: [\"nodekey:" + strings.Repeat("ab", 32) + "\"]}}\n": "relay.verify_clients.open: admits everyone",
		"relay: {home: gopher://x}\n": "relay.home: expected blank, default or an http(s) URL",
		"ddns: {provider: {type: duckdns}, zone: home.duckdns.org, records: [{name: '@', type: A, value: 192.0.2.1}]}\n":                "ddns.provider.api_token: required",
		"ddns: {provider: {type: duckdns, api_token: t}, zone: example.com, records: [{name: '@', type: A, value: 192.0.2.1}]}\n":       "ddns.zone: with duckdns",
		"ddns: {provider: {type: duckdns, api_token: t}, zone: home.duckdns.org, records: [{name: derp, type: A, value: 192.0.2.1}]}\n": "ddns.records[0].name: with duckdns, use @",
		"ddns: {provider: {type: dynv6}, zone: home.dynv6.net, records: [{name: '@', type: A, value: 192.0.2.1}]}\n":                    "dynv6.com/keys",
	} {
		_, err := Parse([]byte(src), false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
	if _, err := Parse([]byte("ddns: {provider: {type: dynv6, api_token: t}, zone: home.dynv6.net, records: [{name: '@', type: AAAA, interface: eth0}]}\n"), false); err != nil {
		t.Errorf("dynv6: %v", err)
	}
}

// TestLine: hints are written in the config's own format.
func TestLine(t *testing.T) {
	uci, yaml := &Config{UCI: true}, &Config{}
	for _, c := range []struct {
		cfg        *Config
		key, value string
		want       string
	}{
		{uci, "relay.verify_clients.open", "true", "option verify_clients_open '1'   (in config relay)"},
		{uci, "relay.verify_clients.allow", "nodekey:x", "list verify_clients_allow 'nodekey:x'   (in config relay)"},
		{yaml, "relay.verify_clients.open", "true", "verify_clients: {open: true}   (under relay:)"},
		{yaml, "relay.verify_clients.allow", "nodekey:x", `verify_clients: {allow: ["nodekey:x"]}   (under relay:)`},
		{yaml, "relay.verify_clients.url", "https://h/verify", `verify_clients: {url: "https://h/verify"}   (under relay:)`},
	} {
		if got := c.cfg.Line(c.key, c.value); got != c.want {
			t.Errorf("Line(%s, %s) = %q, want %q", c.key, c.value, got, c.want)
		}
	}
}

// TestSecretsReadAtLoad: a key x_file fills x at load, so parts get the secret itself; a file
// that cannot be read is a problem at x_file with its line. The sections that will not run
// are not read, except a ddns provider that acme borrows.
func TestSecretsReadAtLoad(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("  s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	missing := filepath.Join(dir, "missing")
	ddns := "ddns:\n  provider: {type: cloudflare, api_token_file: %s}\n  zone: example.com\n  records: [{name: a, type: A, value: 192.0.2.1}]\n"
	cfg, err := Parse([]byte(fmt.Sprintf(ddns, token)), false)
	if err != nil || cfg.DDNS.Provider.APIToken != "s3cret" {
		t.Fatalf("token %q, %v", cfg.DDNS.Provider.APIToken, err)
	}
	for file, want := range map[string]string{
		missing: `line 2: ddns.provider.api_token_file: cannot read "` + missing + `": no such file or directory`,
		empty:   "line 2: ddns.provider.api_token_file: " + empty + " is empty",
	} {
		if _, err := Parse([]byte(fmt.Sprintf(ddns, file)), false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	off := strings.Replace(ddns, "ddns:\n", "ddns:\n  enabled: false\n", 1)
	if _, err := Parse([]byte(fmt.Sprintf(off, missing)), false); err != nil {
		t.Errorf("a disabled section's secret was read: %v", err)
	}
	borrowed := fmt.Sprintf(off, token) + "relay: {hostname: derp.example.com}\nacme: {email: a@example.com}\n"
	cfg, err = Parse([]byte(borrowed), false)
	if err != nil || cfg.ACME.DNSProvider.APIToken != "s3cret" {
		t.Fatalf("borrowed provider token %q, %v", cfg.ACME.DNSProvider.APIToken, err)
	}
}

// TestPeerRelaySection: the peer_relay section reads the same from YAML and UCI, is off
// when absent, takes its defaults, and names each bad key with its line.
func TestPeerRelaySection(t *testing.T) {
	cfg, err := Parse([]byte("relay: {enabled: false}\n"), false)
	if err != nil || cfg.PeerRelay != nil {
		t.Fatalf("absent section: %v %+v", err, cfg.PeerRelay)
	}
	yml, err := Parse([]byte("peer_relay:\n  port: 41000\n  static_endpoints: [auto, \"[2001:db8::1]:41001\", 192.0.2.7]\n  tailscaled_socket: /tmp/ts.sock\n  firewall: nftables\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	uci, err := Parse([]byte("config peer_relay\n\toption port 41000\n\tlist static_endpoints auto\n\tlist static_endpoints '[2001:db8::1]:41001'\n\tlist static_endpoints 192.0.2.7\n\toption tailscaled_socket /tmp/ts.sock\n\toption firewall nftables\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(yml.PeerRelay, uci.PeerRelay) || yml.PeerRelay.Port != 41000 || len(yml.PeerRelay.StaticEndpoints) != 3 || !On(yml.PeerRelay.Enabled, true) {
		t.Fatalf("YAML %+v\nUCI  %+v", yml.PeerRelay, uci.PeerRelay)
	}
	def, err := Parse([]byte("peer_relay: {enabled: false}\n"), false)
	if err != nil || On(def.PeerRelay.Enabled, true) || def.PeerRelay.Port != 40000 || def.PeerRelay.StaticEndpoints[0] != "auto" || def.PeerRelay.Firewall != "auto" {
		t.Fatalf("defaults: %v %+v", err, def.PeerRelay)
	}
	_, err = Parse([]byte("relay: {stun_listen: \":40000\"}\npeer_relay:\n  port: 70000\n  static_endpoints: [none, auto, \"fe80::1%eth0\", nope]\n  firewall: pf\n"), false)
	for _, w := range []string{"line 3: peer_relay.port: expected a UDP port", "line 4: peer_relay.static_endpoints[0]: none stands alone",
		`peer_relay.static_endpoints[2]: expected auto, none`, `peer_relay.static_endpoints[3]`, "line 5: peer_relay.firewall"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	_, err = Parse([]byte("relay: {stun_listen: \":40000\"}\npeer_relay: {}\n"), false)
	if err == nil || !strings.Contains(err.Error(), "peer_relay.port: UDP 40000 is relay.stun_listen's port") {
		t.Errorf("port clash: %v", err)
	}
}
