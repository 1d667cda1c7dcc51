package ddns

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/ddns/internal/cloudflarefake"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// TestUpdaterCloudflare runs the updater against the local stand-in for Cloudflare's API:
// stale duplicates of the record are cleaned up, the record is written once, other records
// stay, and a token without edit rights yields a status error naming the permission.
func TestUpdaterCloudflare(t *testing.T) {
	s := cloudflarefake.New([]string{"example.com"}, map[string]cloudflarefake.Perms{
		"full":     {ZoneRead: true, DNSRead: true, DNSEdit: true},
		"readonly": {ZoneRead: true, DNSRead: true},
	})
	defer s.Close()
	s.Add("example.com", "AAAA", "derp", "2001:db8::aa", 300)
	s.Add("example.com", "AAAA", "derp", "2001:db8::bb", 300)
	s.Add("example.com", "A", "www", "203.0.113.80", 300)

	cfg := Config{
		Provider: provider.Config{Type: "cloudflare", APIToken: "full"},
		Zone:     "example.com", TTL: 120 * time.Second,
		Records: []Record{{Name: "derp", Type: "AAAA", Value: "2001:db8::1"}},
	}
	run := func(cfg Config, until func(u *Updater) bool) *Updater {
		log, _ := testLog(t)
		u, err := New(cfg, t.TempDir(), log, WithHTTPClient(s.Client()), WithTiming(Timing{RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan struct{})
		go func() { u.Run(ctx); close(done) }()
		// The updater writes its state file until Run returns; the temp dir must outlive it.
		defer func() { cancel(); <-done }()
		for !until(u) {
			if ctx.Err() != nil {
				t.Fatalf("timed out; state %+v, records %+v", u.Current(), s.Records("example.com"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return u
	}
	contents := func() []string {
		var out []string
		for _, r := range s.Records("example.com") {
			out = append(out, r.Type+" "+r.Name+" "+r.Content)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"A www.example.com 203.0.113.80", "AAAA derp.example.com 2001:db8::1"}
	run(cfg, func(*Updater) bool { return slices.Equal(contents(), want) })

	cfg.Records[0].Value = "2001:db8::2"
	cfg.Provider.APIToken = "readonly"
	u := run(cfg, func(u *Updater) bool { return stateOf(u, "derp.example.com", "AAAA").Error != "" })
	st := stateOf(u, "derp.example.com", "AAAA")
	if !strings.Contains(st.Error, `"Zone / DNS / Edit"`) {
		t.Errorf("status error %q does not name the missing permission", st.Error)
	}
	if st.NextRetry.IsZero() {
		t.Errorf("no retry scheduled: %+v", st)
	}
	if !slices.Equal(contents(), want) {
		t.Errorf("records changed by a refused update: %v", contents())
	}
}
