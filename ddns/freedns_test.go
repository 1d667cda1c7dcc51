package ddns

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/internal/duckdnsfake"
	"github.com/edgerelay/edgerelay/ddns/internal/dynv6fake"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// runUpdater runs an updater on cfg against hc until until holds (or fails the test) and
// stops it.
func runUpdater(t *testing.T, cfg Config, stateDir string, hc *http.Client, until func(u *Updater) bool) *Updater {
	t.Helper()
	log, _ := testLog(t)
	u, err := New(cfg, stateDir, log, WithHTTPClient(hc), WithTiming(Timing{RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 10*time.Second, "the updater's outcome", func() bool { return until(u) })
	return u
}

// TestUpdaterDuckDNS: a free DuckDNS name follows the line. DuckDNS cannot list records, so
// the updater compares with what it published last: a restart with the same address sends
// nothing, a new address one update. Setting the IPv6 never lets DuckDNS detect an IPv4.
func TestUpdaterDuckDNS(t *testing.T) {
	s := duckdnsfake.New("tok", "home")
	defer s.Close()
	cfg := Config{
		Provider: provider.Config{Type: "duckdns", APIToken: "tok"}, Zone: "home.duckdns.org", TTL: 60 * time.Second,
		Records: []Record{{Name: "@", Type: "AAAA", Value: "2001:db8::1"}},
	}
	dir := t.TempDir()
	// Both sides: the fake may have applied an update whose answer the stop then cut off,
	// and the restart below rightly sends that one again.
	runUpdater(t, cfg, dir, s.Client(), func(u *Updater) bool {
		return s.Get("home").IPv6 == "2001:db8::1" && stateOf(u, "home.duckdns.org", "AAAA").Published.String() == "2001:db8::1"
	})
	if d := s.Get("home"); d.IPv4 != "" {
		t.Errorf("IPv4 detected and set by an IPv6 update: %+v", d)
	}
	n := len(s.Requests())
	runUpdater(t, cfg, dir, s.Client(), func(u *Updater) bool {
		return stateOf(u, "home.duckdns.org", "AAAA").Published.String() == "2001:db8::1"
	})
	if len(s.Requests()) != n {
		t.Errorf("a restart with the same address sent %d more requests", len(s.Requests())-n)
	}
	cfg.Records = append(cfg.Records, Record{Name: "@", Type: "A", Value: "203.0.113.7"})
	cfg.Records[0].Value = "2001:db8::2"
	runUpdater(t, cfg, dir, s.Client(), func(*Updater) bool {
		d := s.Get("home")
		return d.IPv6 == "2001:db8::2" && d.IPv4 == "203.0.113.7"
	})

	cfg.Provider.APIToken = "wrong"
	cfg.Records = cfg.Records[:1]
	cfg.Records[0].Value = "2001:db8::3"
	u := runUpdater(t, cfg, dir, s.Client(), func(u *Updater) bool { return stateOf(u, "home.duckdns.org", "AAAA").Error != "" })
	if e := stateOf(u, "home.duckdns.org", "AAAA").Error; !strings.Contains(e, "refused (KO)") || strings.Contains(e, "wrong") {
		t.Errorf("error %q: want the KO explained, without the token", e)
	}
}

// TestUpdaterDynv6: a free dynv6 zone's own address is set on the zone, a name under it as
// a record; other records stay, and a stale duplicate is replaced.
func TestUpdaterDynv6(t *testing.T) {
	s := dynv6fake.New("tok", "home.dynv6.net", "other.dynv6.net")
	defer s.Close()
	s.Add("home.dynv6.net", "www", "A", "198.51.100.80")
	s.Add("home.dynv6.net", "derp", "AAAA", "2001:db8::aa")
	cfg := Config{
		Provider: provider.Config{Type: "dynv6", APIToken: "tok"}, Zone: "home.dynv6.net", TTL: 60 * time.Second,
		Records: []Record{
			{Name: "@", Type: "AAAA", Value: "2001:db8::1"},
			{Name: "@", Type: "A", Value: "203.0.113.7"},
			{Name: "derp", Type: "AAAA", Value: "2001:db8::2"},
		},
	}
	dir := t.TempDir()
	want := func() bool {
		z := s.Zone("home.dynv6.net")
		recs := s.Records("home.dynv6.net")
		return z.IPv6Prefix == "2001:db8::1" && z.IPv4Address == "203.0.113.7" && len(recs) == 2 &&
			recs[0].Name == "www" && recs[1].Name == "derp" && recs[1].Data == "2001:db8::2"
	}
	runUpdater(t, cfg, dir, s.Client(), func(*Updater) bool { return want() })
	if z := s.Zone("other.dynv6.net"); z.IPv4Address != "" || z.IPv6Prefix != "" {
		t.Errorf("another zone changed: %+v", z)
	}
	// dynv6 can be read back: a restart verifies against the API and writes nothing.
	n, start := len(s.Requests()), time.Now()
	runUpdater(t, cfg, dir, s.Client(), func(u *Updater) bool {
		return stateOf(u, "derp.home.dynv6.net", "AAAA").PublishedAt.After(start)
	})
	for _, r := range s.Requests()[n:] {
		if !strings.HasPrefix(r, "GET ") {
			t.Errorf("a restart with everything in place wrote: %s", r)
		}
	}

	cfg.Provider.APIToken = "wrong"
	cfg.Records = cfg.Records[:1]
	cfg.Records[0].Value = "2001:db8::9"
	u := runUpdater(t, cfg, dir, s.Client(), func(u *Updater) bool { return stateOf(u, "home.dynv6.net", "AAAA").Error != "" })
	if e := stateOf(u, "home.dynv6.net", "AAAA").Error; !strings.Contains(e, "HTTP 401") || !strings.Contains(e, "dynv6.com/keys") {
		t.Errorf("error %q: want the token named as the problem", e)
	}
	if z := s.Zone("home.dynv6.net"); z.IPv6Prefix != "2001:db8::1" {
		t.Errorf("a refused update changed the zone: %+v", z)
	}
}
