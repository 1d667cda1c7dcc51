package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/notify"
)

// webhook is a receiver on loopback that keeps the events POSTed to it.
type webhook struct {
	*httptest.Server
	mu     sync.Mutex
	events []notify.Event
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		var ev notify.Event
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		w.mu.Lock()
		w.events = append(w.events, ev)
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

// find returns the first event of kind for which match holds.
func (w *webhook) find(kind string, match func(notify.Event) bool) (notify.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.Event == kind && match(ev) {
			return ev, true
		}
	}
	return notify.Event{}, false
}

func (w *webhook) waitFor(t *testing.T, kind string, match func(notify.Event) bool) notify.Event {
	t.Helper()
	var ev notify.Event
	waitFor(t, "a "+kind+" event", 2*time.Minute, func() bool {
		var ok bool
		ev, ok = w.find(kind, match)
		return ok
	})
	return ev
}

// hangingWebhook accepts requests and never answers until the test ends.
func hangingWebhook(t *testing.T) (url string, calls func() int) {
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		<-release
	}))
	t.Cleanup(func() { close(release); s.Close() })
	return s.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func aaaa(t *testing.T, ns *testenv.BIND9, name string) string {
	rrs, err := ns.Lookup(name, dns.TypeAAAA)
	if err != nil || len(rrs) != 1 {
		return ""
	}
	return rrs[0].(*dns.AAAA).AAAA.String()
}

// TestNotifyDDNS: an address change in a namespace reaches BIND9 and the webhook hears of
// it (address changed, record updated, with both addresses); a DNS outage is a record
// failing event; a webhook that never answers delays none of it.
func TestNotifyDDNS(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "up")
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "2001:db8:1::10/64", "dev", "wan0", "nodad")
	hook := newWebhook(t)
	hangURL, hangCalls := hangingWebhook(t)
	yaml := fmt.Sprintf(`state_dir: %s
relay: {enabled: false}
ddns:
  provider: {type: rfc2136, server: %q, key_name: %q, key_alg: %q, key: %q}
  zone: example.test
  records: [{name: derp, type: AAAA, interface: wan0}]
notify:
  webhooks:
    - url: %q
      timeout: 5m
    - url: %q
      events: [address_changed, record_updated, record_failing]
`, t.TempDir(), ns.Addr, ns.KeyName, ns.KeyAlg, ns.Key, hangURL+"/botSECRET/sendMessage", hook.URL+"/hook")
	cfg, err := config.Parse([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, nil)
	const name = "derp.example.test"
	isRecord := func(old, new string) func(notify.Event) bool {
		return func(ev notify.Event) bool {
			return ev.Record == name && ev.Type == "AAAA" && ev.Old == old && ev.New == new
		}
	}
	hook.waitFor(t, notify.RecordUpdated, isRecord("", "2001:db8:1::10"))

	testenv.IP(t, "addr", "add", "2001:db8:2::20/64", "dev", "wan0", "nodad")
	testenv.IP(t, "addr", "del", "2001:db8:1::10/64", "dev", "wan0")
	ev := hook.waitFor(t, notify.AddressChanged, isRecord("2001:db8:1::10", "2001:db8:2::20"))
	if ev.Host == "" || ev.Time.IsZero() || !strings.Contains(ev.Message, "from 2001:db8:1::10 to 2001:db8:2::20") {
		t.Fatalf("address changed event %+v", ev)
	}
	hook.waitFor(t, notify.RecordUpdated, isRecord("2001:db8:1::10", "2001:db8:2::20"))
	if got := aaaa(t, ns, name); got != "2001:db8:2::20" {
		t.Fatalf("BIND9 has %q", got)
	}
	// All of that while the other webhook still sits on its first event.
	if n := hangCalls(); n != 1 {
		t.Fatalf("the hanging webhook was called %d times, want 1 (it has not answered the first)", n)
	}

	ns.Stop()
	testenv.IP(t, "addr", "add", "2001:db8:3::30/64", "dev", "wan0", "nodad")
	testenv.IP(t, "addr", "del", "2001:db8:2::20/64", "dev", "wan0")
	ev = hook.waitFor(t, notify.RecordFailing, func(ev notify.Event) bool { return ev.New == "2001:db8:3::30" })
	if ev.Error == "" || ev.Old != "2001:db8:2::20" {
		t.Fatalf("record failing event %+v", ev)
	}
	ns.Start()
	hook.waitFor(t, notify.RecordUpdated, isRecord("2001:db8:2::20", "2001:db8:3::30"))

	var st []notify.WebhookStatus
	waitFor(t, "status to count the webhooks' events", time.Minute, func() bool {
		st = a.Status(t.Context()).Webhooks
		return len(st) == 2 && st[1].Sent >= 6
	})
	if st[0].Sent != 0 || st[0].Queued == 0 || strings.Contains(st[0].URL, "SECRET") {
		t.Fatalf("hanging webhook's status %+v", st[0])
	}
}

// TestNotifyCertRenewed: a certificate from Pebble is a cert_renewed event with its names
// and expiry.
func TestNotifyCertRenewed(t *testing.T) {
	pebbleBin := testenv.BuildPebble(t)
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{Binary: pebbleBin})
	hook := newWebhook(t)
	yaml := fmt.Sprintf(`state_dir: %s
relay: {enabled: false}
acme:
  email: admin@example.test
  domains: [derp.example.test]
  directory: %s
  ca_cert_file: %s
  resolvers: [%q]
  propagation_timeout: 30s
  dns_provider: {type: rfc2136, server: %q, key_name: %q, key_alg: %q, key: %q}
notify:
  webhooks: [{url: %q, events: [cert_renewed, cert_failing]}]
`, t.TempDir(), peb.DirectoryURL, peb.CACertFile, ns.Addr, ns.Addr, ns.KeyName, ns.KeyAlg, ns.Key, hook.URL)
	cfg, err := config.Parse([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, nil)
	ev := hook.waitFor(t, notify.CertRenewed, func(notify.Event) bool { return true })
	a.mu.Lock()
	m := a.acme
	a.mu.Unlock()
	if !slices.Equal(ev.Names, []string{"derp.example.test"}) || m == nil || !ev.Expires.Equal(m.Expiry()) {
		t.Fatalf("event %+v, certificate expires %v", ev, m.Expiry())
	}
}

// notifyingAgent is an agent (not running its parts) whose notifier sends to a receiver.
func notifyingAgent(t *testing.T) (*Agent, *webhook) {
	hook := newWebhook(t)
	a := New(config.Default(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	n, err := notify.New(notify.Config{Webhooks: []notify.Webhook{{URL: hook.URL}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	a.notifier = n
	return a, hook
}

// TestNotifyPartFailingRepeatedly: a part that fails again and again is one part_failing
// event for the streak, with its error.
func TestNotifyPartFailingRepeatedly(t *testing.T) {
	a, hook := notifyingAgent(t)
	s, _, _ := newTestSupervisor(t)
	s.failing = a.notifyPartFailing
	var log []string
	healed := make(chan struct{})
	p := &fakePart{name: "ddns", log: &log, run: func(ctx context.Context, n int) error {
		if n <= 5 {
			return errors.New("DNS API down")
		}
		close(healed)
		return serve(ctx, n)
	}}
	s.apply(t.Context(), []Part{p.part(1, false)})
	<-healed
	ev := hook.waitFor(t, notify.PartFailing, func(ev notify.Event) bool { return ev.Part == "ddns" })
	if ev.Error != "DNS API down" || !strings.Contains(ev.Message, "ddns keeps failing") {
		t.Fatalf("event %+v", ev)
	}
	a.notify(&notify.Event{Event: notify.CertRenewed}) // a marker: everything before it has been sent
	hook.waitFor(t, notify.CertRenewed, func(notify.Event) bool { return true })
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.events) != 2 {
		t.Fatalf("events %+v, want one part_failing for the streak", hook.events)
	}
}

// TestNotifyCertFailingNearExpiry: a failed order is told only when the certificate expires
// within 7 days, or when there is none.
func TestNotifyCertFailingNearExpiry(t *testing.T) {
	a, hook := notifyingAgent(t)
	names := []string{"derp.example.test"}
	for _, f := range []acme.OrderFailure{
		{Domains: names, Err: errors.New("far"), NotAfter: time.Now().Add(30 * 24 * time.Hour)},
		{Domains: names, Err: errors.New("near"), NotAfter: time.Now().Add(3 * 24 * time.Hour)},
		{Domains: names, Err: errors.New("none")},
	} {
		a.notifyOrderFailure(f)
	}
	hook.waitFor(t, notify.CertFailing, func(ev notify.Event) bool { return ev.Error == "none" })
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.events) != 2 || hook.events[0].Error != "near" || hook.events[0].Expires.IsZero() {
		t.Fatalf("events %+v, want near and none", hook.events)
	}
}
