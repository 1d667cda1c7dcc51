package ddns

import (
	"net/netip"
	"testing"
)

func c(a string, flags, preferred int) Candidate {
	return Candidate{Addr: netip.MustParseAddr(a), Flags: flags, PreferredLft: preferred, ValidLft: lifetimeForever}
}

func TestSelect(t *testing.T) {
	forever := lifetimeForever
	tests := []struct {
		name    string
		typ     string
		cands   []Candidate
		current string
		want    string // "" = none
	}{
		{"only ULA and link-local", "AAAA", []Candidate{c("fd00::1", flagPermanent, forever), c("fe80::1", flagPermanent, forever)}, "", ""},
		{"global beats ULA", "AAAA", []Candidate{c("fd00::1", flagPermanent, forever), c("2001:db8::1", 0, 3600)}, "", "2001:db8::1"},
		{"temporary never", "AAAA", []Candidate{c("2001:db8::7", flagTemporary, 86400)}, "", ""},
		{"stable preferred over temporary", "AAAA", []Candidate{c("2001:db8::7", flagTemporary, 86400), c("2001:db8::8", flagManageTemp, 3600)}, "", "2001:db8::8"},
		{"deprecated flag", "AAAA", []Candidate{c("2001:db8::1", flagDeprecated, 100)}, "", ""},
		{"preferred lifetime zero is deprecated", "AAAA", []Candidate{c("2001:db8::1", 0, 0)}, "", ""},
		{"tentative", "AAAA", []Candidate{c("2001:db8::1", flagTentative, forever)}, "", ""},
		{"optimistic", "AAAA", []Candidate{c("2001:db8::1", flagOptimistic, forever)}, "", ""},
		{"dad failed", "AAAA", []Candidate{c("2001:db8::1", flagDADFailed|flagPermanent, forever)}, "", ""},
		{"static beats DHCPv6 beats SLAAC", "AAAA", []Candidate{c("2001:db8::3", flagStablePrivacy, forever), c("2001:db8::2", flagNoPrefixRoute, 100), c("2001:db8::9", flagPermanent, forever)}, "", "2001:db8::9"},
		{"DHCPv6 beats SLAAC", "AAAA", []Candidate{c("2001:db8::3", flagStablePrivacy, forever), c("2001:db8::2", flagNoPrefixRoute, 100)}, "", "2001:db8::2"},
		{"EUI-64 is stable", "AAAA", []Candidate{c("2001:db8::1", 0, forever), c("2001:db8::211:22ff:fe33:4455", 0, 100)}, "", "2001:db8::211:22ff:fe33:4455"},
		{"newest prefix by preferred lifetime", "AAAA", []Candidate{c("2001:db8:1::1", flagManageTemp, 600), c("2001:db8:2::1", flagManageTemp, 3600)}, "", "2001:db8:2::1"},
		{"keep current while valid", "AAAA", []Candidate{c("2001:db8:1::1", flagManageTemp, 600), c("2001:db8:2::1", flagPermanent, forever)}, "2001:db8:1::1", "2001:db8:1::1"},
		{"current deprecated: move", "AAAA", []Candidate{c("2001:db8:1::1", flagManageTemp|flagDeprecated, 0), c("2001:db8:2::1", flagManageTemp, 3600)}, "2001:db8:1::1", "2001:db8:2::1"},
		{"current gone: move", "AAAA", []Candidate{c("2001:db8:2::1", 0, 3600)}, "2001:db8:1::1", "2001:db8:2::1"},
		{"tie broken by address", "AAAA", []Candidate{c("2001:db8::b", 0, 3600), c("2001:db8::a", 0, 3600)}, "", "2001:db8::a"},
		{"not 2000::/3", "AAAA", []Candidate{c("4000::1", 0, 3600), c("::1", flagPermanent, forever)}, "", ""},
		{"IPv4 in AAAA list ignored", "AAAA", []Candidate{c("203.0.113.1", 0, forever)}, "", ""},
		{"IPv4 private and CGNAT", "A", []Candidate{c("192.168.1.2", 0, forever), c("100.64.3.4", 0, forever), c("10.0.0.1", 0, forever), c("172.16.0.1", 0, forever)}, "", ""},
		{"IPv4 public", "A", []Candidate{c("192.168.1.2", 0, forever), c("203.0.113.9", 0, forever)}, "", "203.0.113.9"},
		{"IPv4 primary before secondary", "A", []Candidate{c("203.0.113.2", flagTemporary, forever), c("203.0.113.9", 0, forever)}, "", "203.0.113.9"},
		{"IPv4 keep current", "A", []Candidate{c("203.0.113.2", 0, forever), c("203.0.113.9", 0, forever)}, "203.0.113.9", "203.0.113.9"},
		{"IPv4 loopback and link-local", "A", []Candidate{c("127.0.0.1", 0, forever), c("169.254.1.1", 0, forever)}, "", ""},
		{"IPv4-mapped for A", "A", []Candidate{c("::ffff:203.0.113.5", 0, forever)}, "", "203.0.113.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cur netip.Addr
			if tt.current != "" {
				cur = netip.MustParseAddr(tt.current)
			}
			got, rej := Select(tt.typ, tt.cands, cur)
			if (tt.want == "" && got.IsValid()) || (tt.want != "" && got.String() != tt.want) {
				t.Errorf("Select = %v, want %q (rejections %v)", got, tt.want, rej)
			}
			if tt.want == "" && len(rej) != len(tt.cands) {
				t.Errorf("no address chosen but only %d of %d rejections explained", len(rej), len(tt.cands))
			}
		})
	}
}

func TestScopeMustBeGlobal(t *testing.T) {
	cand := c("2001:db8::1", flagPermanent, lifetimeForever)
	cand.Scope = 253
	if got, _ := Select("AAAA", []Candidate{cand}, netip.Addr{}); got.IsValid() {
		t.Errorf("took link-scoped %v", got)
	}
}

// FuzzSelect checks that whatever the kernel reports, the choice is one of the eligible
// candidates and never a ULA, link-local, temporary, deprecated or tentative address.
func FuzzSelect(f *testing.F) {
	f.Add([]byte("2001:db8::1"), 0x80, 100, true, []byte("fd00::1"), 0x01, 0)
	f.Add([]byte("fe80::1"), 0x20, 0, false, []byte("2001:db8::2"), 0x40, -1)
	f.Add([]byte("100.64.0.1"), 0, 1, true, []byte("203.0.113.1"), 0x01, 5)
	f.Fuzz(func(t *testing.T, a1 []byte, fl1, pl1 int, six bool, a2 []byte, fl2, pl2 int) {
		typ := "A"
		if six {
			typ = "AAAA"
		}
		var cands []Candidate
		for _, x := range []struct {
			b      []byte
			fl, pl int
		}{{a1, fl1, pl1}, {a2, fl2, pl2}} {
			if a, ok := netip.AddrFromSlice(x.b); ok {
				cands = append(cands, Candidate{Addr: a, Flags: x.fl, PreferredLft: x.pl})
			} else if a, err := netip.ParseAddr(string(x.b)); err == nil {
				cands = append(cands, Candidate{Addr: a, Flags: x.fl, PreferredLft: x.pl})
			}
		}
		var cur netip.Addr
		if len(cands) > 0 {
			cur = cands[0].Addr
		}
		got, rej := Select(typ, cands, cur)
		if !got.IsValid() {
			if len(rej) != len(cands) {
				t.Fatalf("nothing chosen, %d candidates, %d rejections", len(cands), len(rej))
			}
			return
		}
		// The choice must be an eligible candidate (the same address may be listed twice
		// with different flags here, which the kernel never does).
		found := false
		for _, c := range cands {
			if c.Addr.Unmap() == got && eligible(typ, Candidate{Addr: got, Flags: c.Flags, PreferredLft: c.PreferredLft, Scope: c.Scope}) == "" {
				found = true
			}
		}
		if !found {
			t.Fatalf("chose %v, not an eligible candidate of %+v", got, cands)
		}
		if got.IsPrivate() || got.IsLinkLocalUnicast() || got.IsLoopback() {
			t.Fatalf("chose non-public %v", got)
		}
	})
}

func TestParseEcho(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7\n":      "203.0.113.7",
		"  2001:db8::1  ":    "2001:db8::1",
		"[2001:db8::2]\r\n":  "2001:db8::2",
		"::ffff:203.0.113.8": "203.0.113.8",
		"":                   "",
		"<html>hi</html>":    "",
		"fe80::1%eth0":       "",
		"203.0.113.7 extra":  "203.0.113.7",
		"999.1.1.1":          "",
	} {
		got, err := ParseEcho([]byte(in))
		if want == "" {
			if err == nil {
				t.Errorf("ParseEcho(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("ParseEcho(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func FuzzParseEcho(f *testing.F) {
	f.Add([]byte("203.0.113.7\n"))
	f.Add([]byte("[2001:db8::1]"))
	f.Add([]byte("\x00\xff garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseEcho(b)
		if err == nil && (!a.IsValid() || a.Zone() != "" || a.Is4In6()) {
			t.Fatalf("ParseEcho(%q) = %v without error", b, a)
		}
	})
}

func TestRelativeName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"derp", "derp"}, {"@", "@"}, {"example.com", "@"}, {"example.com.", "@"},
		{"derp.example.com", "derp"}, {"a.b.example.com.", "a.b"}, {"DERP", "derp"},
		{"", ""}, {"derp.other.org.", ""}, {"bad..name", ""}, {"a b", ""},
	} {
		got, err := relativeName(tt.in, "example.com.")
		if (tt.want == "") != (err != nil) || got != tt.want {
			t.Errorf("relativeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
