package peerrelay

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestEndpoints(t *testing.T) {
	public := []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("::ffff:198.51.100.1"), netip.MustParseAddr("2001:db8::1")}
	for _, c := range []struct {
		list []string
		want string
	}{
		{[]string{"auto"}, "203.0.113.10:40000 198.51.100.1:40000 [2001:db8::1]:40000"},
		{[]string{"none"}, ""},
		{[]string{"192.0.2.7", "auto", "203.0.113.10:40000", "[2001:db8::9]:41000"}, "192.0.2.7:40000 203.0.113.10:40000 198.51.100.1:40000 [2001:db8::1]:40000 [2001:db8::9]:41000"},
	} {
		cfg := Config{Port: 40000, StaticEndpoints: c.list}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ap := range cfg.endpoints(public) {
			got = append(got, ap.String())
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%q: got %v, want %s", c.list, got, c.want)
		}
	}
	if got := (&Config{Port: 40000, StaticEndpoints: []string{"auto"}}).endpoints(nil); len(got) != 0 {
		t.Errorf("auto without addresses: %v", got)
	}
}

func TestPrefsEqual(t *testing.T) {
	p1, p2 := uint16(1), uint16(1)
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("[2001:db8::1]:1")
	for _, c := range []struct {
		x, y relayPrefs
		eq   bool
	}{
		{relayPrefs{}, relayPrefs{}, true},
		{relayPrefs{Port: &p1}, relayPrefs{Port: &p2}, true},
		{relayPrefs{Port: &p1}, relayPrefs{}, false},
		{relayPrefs{Endpoints: []netip.AddrPort{a, b}}, relayPrefs{Endpoints: []netip.AddrPort{b, a}}, true},
		{relayPrefs{Endpoints: []netip.AddrPort{a}}, relayPrefs{Endpoints: []netip.AddrPort{a, b}}, false},
		{relayPrefs{Endpoints: []netip.AddrPort{a, a}}, relayPrefs{Endpoints: []netip.AddrPort{a, b}}, false},
	} {
		if c.x.equal(&c.y) != c.eq || c.y.equal(&c.x) != c.eq {
			t.Errorf("%v equal %v: want %v", c.x, c.y, c.eq)
		}
	}
}

func TestWriteGrant(t *testing.T) {
	// No tailscaled at the socket: the grant names a tag to give the box.
	r, err := New(Config{Port: 40001, TailscaledSocket: t.TempDir() + "/none.sock"}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range GrantFormats {
		var b bytes.Buffer
		if err := r.WriteGrant(t.Context(), &b, f); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.Contains(out, `"app": {"tailscale.com/cap/relay": []}`) || !strings.Contains(out, `"dst": ["tag:peer-relay"]`) ||
			!strings.Contains(out, "UDP 40001") || slices.Contains([]string{"headscale"}, f) != strings.Contains(out, "2841") {
			t.Errorf("%s:\n%s", f, out)
		}
	}
	if err := r.WriteGrant(t.Context(), &bytes.Buffer{}, "yaml"); err == nil {
		t.Error("unknown format accepted")
	}
}
