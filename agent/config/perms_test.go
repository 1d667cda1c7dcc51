package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPermissionWarnings(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o755)
	os.Chmod(state, 0o755) // whatever the umask
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Repeat("5a", 32)), 0o600)
		os.Chmod(p, mode)
		return p
	}
	mesh, tsig, token, cert := write("mesh.key", 0o666), write("tsig.key", 0o644), write("token", 0o640), write("cert.pem", 0o644)
	src := "state_dir: " + state + "\nrelay:\n  tls: {mode: manual, cert_file: " + cert + ", key_file: " + token + "}\n" +
		"  mesh: {key_file: " + mesh + "}\nddns:\n  provider: {type: rfc2136, server: 'ns:53', key_name: k., key_file: " + tsig + "}\n" +
		"  zone: example.com\n  records: [{name: a, type: A, value: 192.0.2.1}]\n"
	cfg, err := Parse([]byte(src), false)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.PermissionWarnings(), "\n")
	for _, want := range []string{
		"relay.mesh.key_file: " + mesh + " is mode 0666",
		"ddns.provider.key_file: " + tsig + " is mode 0644",
		"state_dir: " + state + " is mode 0755",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	// Group read (how BIND shares keys with named) and public certificates are fine.
	for _, quiet := range []string{token, cert} {
		if strings.Contains(got, quiet+" ") {
			t.Errorf("warned about %s:\n%s", quiet, got)
		}
	}
	os.Chmod(mesh, 0o600)
	os.Chmod(tsig, 0o600)
	os.Chmod(state, 0o700)
	if w := cfg.PermissionWarnings(); len(w) != 0 {
		t.Errorf("warnings after chmod: %q", w)
	}
}

func TestYAMLErrorNamesYAMLOnce(t *testing.T) {
	_, err := Parse([]byte(strings.Repeat("[", 20000)), false)
	if err == nil || !strings.HasPrefix(err.Error(), "yaml: ") || strings.Contains(err.Error(), "yaml: yaml") {
		t.Fatalf("error %q, want one yaml: prefix", err)
	}
}

func TestRelayLimits(t *testing.T) {
	cfg, err := Parse([]byte("relay: {}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Relay
	if r.MaxPending != 128 || r.MaxPendingPerSource != 16 || r.AcceptRatePerSource != 20 || r.AcceptBurstPerSource != 40 {
		t.Fatalf("defaults %+v", r)
	}
	for src, want := range map[string]string{
		"relay: {max_pending: 4, max_pending_per_source: 8}\n":     "relay.max_pending_per_source: must not exceed max_pending",
		"relay: {queue_bytes: 1000}\n":                             "relay.queue_bytes: must hold at least one largest packet",
		"relay: {queue_bytes_total: 70000, queue_bytes: 100000}\n": "relay.queue_bytes_total: must hold at least one client's",
		"relay: {accept_rate_per_source: -1}\n":                    "relay.accept_rate_per_source: must not be negative",
	} {
		if _, err := Parse([]byte(src), false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}
