package image

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/config"
)

// TestDefaultConfig: the image's config is the Synology default with the image's paths, and
// the daemon's own decoder accepts it.
func TestDefaultConfig(t *testing.T) {
	b, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "@PKGVAR@") {
		t.Errorf("placeholder left:\n%s", b)
	}
	cfg, err := config.Parse(b, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if cfg.StateDir != StateDir || !strings.HasPrefix(cfg.StateDir, VarDir+"/") {
		t.Errorf("state_dir %s, want %s inside the volume", cfg.StateDir, StateDir)
	}
}

// TestExposedPorts: the ports follow the config (STUN off: no UDP port) plus the web page's.
func TestExposedPorts(t *testing.T) {
	for cfg, want := range map[string][]string{
		"relay: {listen: \":443\", stun_listen: \"[::]:3479\"}\n": {"3479/udp", "443/tcp", "8021/tcp"},
		"relay: {listen: \"0.0.0.0:12345\", stun_listen: \"\"}\n": {"12345/tcp", "8021/tcp"},
	} {
		ports, err := exposedPorts([]byte(cfg))
		if got := slices.Sorted(maps.Keys(ports)); err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", cfg, got, err, want)
		}
	}
	if _, err := exposedPorts([]byte("relay: {listen: 12345}\n")); err == nil {
		t.Error("a listen address without a port was accepted")
	}
}
