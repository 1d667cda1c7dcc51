package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSettingsNameRealKeys(t *testing.T) {
	for _, s := range Settings {
		typ := reflect.TypeOf(Config{})
		for _, p := range strings.Split(s.Key, ".") {
			f, ok := yamlFields(derefType(typ))[p]
			if !ok {
				t.Errorf("setting %s: no key %q", s.Key, p)
				break
			}
			typ = f.typ
		}
	}
}

const editYAMLIn = `# edgerelay on the NAS
state_dir: /var/lib/edgerelay   # keep on disk
relay:
  hostname: 127.0.0.1
  listen: ":12345"
  # region comment
  region: {id: 900, code: home, name: "Home"}
  keepalive: 45s              # not on the page
  tls: {mode: self-signed}
  verify_clients:
    allow: ["nodekey:0000000000000000000000000000000000000000000000000000000000000001"]
web:
  listen: ":12380"
`

func TestEditYAMLKeepsWhatThePageDoesNotTouch(t *testing.T) {
	out, err := EditBytes([]byte(editYAMLIn), false, map[string]string{
		"relay.region.name":              "Attic",
		"relay.stun_listen":              "", // empty: STUN off, written as ""
		"relay.tls.key_file":             "", // not in the file: stays out
		"relay.hostname":                 "", // removed
		"log_level":                      "debug",
		"relay.live_map":                 "true",
		"relay.verify_clients.allow":     "nodekey:0000000000000000000000000000000000000000000000000000000000000002\n\n nodekey:0000000000000000000000000000000000000000000000000000000000000003 ",
		"relay.verify_clients.url":       "https://hs.example.com/verify",
		"relay.verify_clients.open":      "false",
		"relay.verify_clients.fail_open": "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"# edgerelay on the NAS", "# keep on disk", "# region comment", "keepalive: 45s", "# not on the page",
		`name: "Attic"`, "log_level: debug", "live_map: true", "nodekey:0000000000000000000000000000000000000000000000000000000000000003",
		"url: https://hs.example.com/verify", `listen: ":12380"`} {
		if !strings.Contains(s, want) {
			t.Errorf("result lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "hostname") || !strings.Contains(s, `stun_listen: ""`) || strings.Contains(s, "key_file") || strings.Contains(s, "…0001") {
		t.Errorf("result:\n%s", s)
	}
	cfg, err := Parse(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Region.Name != "Attic" || len(cfg.Relay.VerifyClients.Allow) != 2 || cfg.Relay.KeepAlive.String() != "45s" || cfg.Relay.STUNAddr() != "" {
		t.Errorf("parsed back: %+v", cfg.Relay)
	}
}

func TestEditYAMLAddsSectionsAndReplacesBlockLists(t *testing.T) {
	in := editYAMLIn + "subnet:\n  enabled: false\n  lan_interfaces:\n    - br-lan   # the LAN\n    - eth1\n  snat: true\nacme:\n"
	out, err := EditBytes([]byte(in), false, map[string]string{
		"subnet.lan_interfaces": "eth0\nwlan0",
		"ddns.enabled":          "false",
		"acme.enabled":          "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"  lan_interfaces: [eth0, wlan0]\n  snat: true\n", "acme:\n  enabled: false\n", "ddns:\n  enabled: false\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("result lacks %q:\n%s", want, s)
		}
	}
}

const editUCIIn = `config edgerelay 'main'
	option state_dir '/etc/edgerelay'
	option log_level 'info'

config relay 'relay'
	option enabled '1'
	# The name clients connect to
	option hostname '127.0.0.1'
	option listen ':12345'
	option region_name 'Home'
	list verify_clients_allow 'nodekey:0000000000000000000000000000000000000000000000000000000000000001'
	list verify_clients_allow 'nodekey:0000000000000000000000000000000000000000000000000000000000000002'
	option keepalive '45s'
	#option home 'blank'

config acme 'acme'
	option enabled '0'
`

func TestEditUCIRewritesOnlyTheTouchedOptions(t *testing.T) {
	out, err := EditBytes([]byte(editUCIIn), true, map[string]string{
		"relay.region.name":          "Bob's attic",
		"relay.verify_clients.allow": "nodekey:0000000000000000000000000000000000000000000000000000000000000003",
		"relay.live_map":             "false",
		"relay.stun_listen":          "", // uci deletes an empty option (the default would return): off
		"log_level":                  "warn",
		"subnet.enabled":             "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `config edgerelay 'main'
	option state_dir '/etc/edgerelay'
	option log_level 'warn'

config relay 'relay'
	option enabled '1'
	# The name clients connect to
	option hostname '127.0.0.1'
	option listen ':12345'
	option region_name 'Bob'\''s attic'
	list verify_clients_allow 'nodekey:0000000000000000000000000000000000000000000000000000000000000003'
	option keepalive '45s'
	option stun_listen 'off'
	option live_map '0'
	#option home 'blank'

config acme 'acme'
	option enabled '0'

config subnet 'subnet'
	option enabled '0'
`
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	cfg, err := Parse(out, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Region.Name != "Bob's attic" || cfg.Relay.STUNAddr() != "" {
		t.Errorf("read back: region name %q, STUN %q (want off)", cfg.Relay.Region.Name, cfg.Relay.STUNAddr())
	}
}

func TestEditWithProblemsWritesNothing(t *testing.T) {
	for name, in := range map[string]string{"config.yaml": editYAMLIn, "edgerelay": editUCIIn} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(in), 0o640); err != nil {
			t.Fatal(err)
		}
		err := Edit(path, map[string]string{"relay.listen": "not an address", "relay.region.id": "x1", "acme.enabled": "true"})
		var probs Problems
		if !errors.As(err, &probs) {
			t.Fatalf("%s: %v, want problems", name, err)
		}
		if !strings.Contains(err.Error(), "relay.region.id") {
			t.Errorf("%s: problems %v do not name relay.region.id", name, err)
		}
		err = Edit(path, map[string]string{"relay.listen": "not an address", "acme.enabled": "true"})
		if !errors.As(err, &probs) || !strings.Contains(err.Error(), "relay.listen") {
			t.Errorf("%s: %v, want a problem naming relay.listen", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != in {
			t.Errorf("%s: a config with problems was written:\n%s", name, b)
		}
		if err := Edit(path, map[string]string{"relay.region.name": "Cellar"}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cfg, err := Load(path)
		if err != nil || cfg.Relay.Region.Name != "Cellar" {
			t.Errorf("%s: after a good edit: %v %q", name, err, cfg.Relay.Region.Name)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v after the edit, want the file's own 0640", name, fi.Mode().Perm())
		}
	}
}

func TestWebNeverOnTheDERPPort(t *testing.T) {
	_, err := Parse([]byte("relay: {listen: \":12345\", hostname: 127.0.0.1}\nweb: {listen: \"192.168.1.1:12345\"}\n"), false)
	if err == nil || !strings.Contains(err.Error(), "web.listen: must not be the relay's DERP port") {
		t.Errorf("web on the DERP port: %v", err)
	}
	cfg, err := Parse([]byte("config relay 'relay'\n\toption hostname '127.0.0.1'\nconfig web 'web'\n\toption listen '192.168.1.1:8021'\n\toption allow_public '1'\n"), true)
	if err != nil || cfg.Web.Listen != "192.168.1.1:8021" || !cfg.Web.AllowPublic {
		t.Errorf("UCI web section: %v %+v", err, cfg.Web)
	}
}

// Flow mappings get keys added and removed in place; a plain block scalar may hold commas.
func TestEditYAMLFlowAndPlain(t *testing.T) {
	in := "relay:\n  hostname: 127.0.0.1\n  region: {id: 900, code: home, name: Home}\n  tls: { mode: self-signed }\n" +
		"acme: {email: me@example.com, domains: [a.example.com]}\nddns:\n  zone: example.com # the zone, with, commas\n" +
		"  provider: {type: rfc2136, server: 'ns:53', key_name: k., key: eA==}\n  records: [{name: derp, type: A, interface: eth0}]\n"
	for _, c := range []struct {
		key, value, want string
	}{
		{"relay.region.code", "", "region: {id: 900, name: Home}\n"},
		{"relay.region.name", "", "region: {id: 900, code: home}\n"},
		{"relay.region.id", "", "region: {code: home, name: Home}\n"},
		{"relay.region.name", "Bob's: attic", `region: {id: 900, code: home, name: "Bob's: attic"}` + "\n"},
		{"relay.tls.cert_file", "/etc/c.pem", "tls: { mode: self-signed, cert_file: /etc/c.pem }\n"},
		{"acme.domains", "a.example.com\nb.example.com", "acme: {email: me@example.com, domains: [a.example.com, b.example.com]}\n"},
		{"ddns.zone", "example.org", "  zone: example.org # the zone, with, commas\n"},
		{"ddns.ttl", "60", "  records: [{name: derp, type: A, interface: eth0}]\n  ttl: 60\n"},
		{"relay.verify_clients.url", "https://hs/verify", "  tls: { mode: self-signed }\n  verify_clients:\n    url: https://hs/verify\nacme:"},
		{"relay.hostname", "true", `hostname: "true"`},
	} {
		out, err := EditBytes([]byte(in), false, map[string]string{c.key: c.value})
		if err != nil {
			t.Errorf("%s=%q: %v", c.key, c.value, err)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s=%q: result lacks %q:\n%s", c.key, c.value, c.want, out)
		}
	}
}

func TestEditRefusesKeysThePageDoesNotOffer(t *testing.T) {
	_, err := EditBytes([]byte(editYAMLIn), false, map[string]string{"relay.region.name": "Attic", "relay.mesh.key_file": "/x", "relay.tls.mode": "bogus"})
	var probs Problems
	if !errors.As(err, &probs) || len(probs) != 2 || !strings.Contains(err.Error(), "relay.mesh.key_file: not a setting the page can change") ||
		!strings.Contains(err.Error(), "relay.tls.mode: want one of") {
		t.Errorf("got %v", err)
	}
}
