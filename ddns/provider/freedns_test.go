package provider

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/ddns/internal/duckdnsfake"
	"github.com/edgerelay/edgerelay/ddns/internal/dynv6fake"
)

// TestDuckDNSChallenge: what ACME's DNS-01 does with a DuckDNS name. The SOA lookup gives
// the zone duckdns.org, the record _acme-challenge.<name>; DuckDNS keeps the one TXT value
// of the name, and deleting clears only it.
func TestDuckDNSChallenge(t *testing.T) {
	s := duckdnsfake.New("tok", "home")
	defer s.Close()
	p, err := New(Config{Type: "duckdns", APIToken: "tok"}, Options{HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.SetRecords(ctx, "home.duckdns.org.", []libdns.Record{libdns.Address{Name: "@", IP: netip.MustParseAddr("2001:db8::1")}}); err != nil {
		t.Fatal(err)
	}
	txt := libdns.TXT{Name: "_acme-challenge.home", Text: "token-value"}
	if _, err := p.AppendRecords(ctx, "duckdns.org.", []libdns.Record{txt}); err != nil {
		t.Fatal(err)
	}
	if d := s.Get("home"); d.TXT != "token-value" || d.IPv6 != "2001:db8::1" {
		t.Fatalf("after the challenge record: %+v", d)
	}
	if _, err := p.DeleteRecords(ctx, "duckdns.org.", []libdns.Record{txt}); err != nil {
		t.Fatal(err)
	}
	if d := s.Get("home"); d.TXT != "" || d.IPv6 != "2001:db8::1" {
		t.Fatalf("after cleanup: %+v", d)
	}
	if _, err := p.GetRecords(ctx, "home.duckdns.org."); !errors.Is(err, ErrCannotList) {
		t.Errorf("GetRecords: %v", err)
	}
	if _, err := p.DeleteRecords(ctx, "home.duckdns.org.", []libdns.Record{libdns.Address{Name: "@", IP: netip.MustParseAddr("2001:db8::1")}}); err == nil {
		t.Error("deleting one address (which would clear both) was accepted")
	}
	if _, err := p.SetRecords(ctx, "example.com.", []libdns.Record{txt}); err == nil || !strings.Contains(err.Error(), "not under a DuckDNS name") {
		t.Errorf("a zone that is not DuckDNS: %v", err)
	}
	for _, q := range s.Requests() {
		if q.Get("verbose") != "true" || q.Get("domains") != "home" {
			t.Errorf("request %v", q)
		}
	}
}

// TestDynv6Challenge: DNS-01 records in a dynv6 zone are records of the zone; removing one
// value leaves the others, and the API's errors say what was wrong.
func TestDynv6Challenge(t *testing.T) {
	s := dynv6fake.New("tok", "home.dynv6.net")
	defer s.Close()
	p, err := New(Config{Type: "dynv6", APIToken: "tok"}, Options{HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := libdns.TXT{Name: "_acme-challenge", Text: "one"}
	b := libdns.TXT{Name: "_acme-challenge", Text: "two"}
	if _, err := p.AppendRecords(ctx, "home.dynv6.net.", []libdns.Record{a, b}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetRecords(ctx, "home.dynv6.net.", []libdns.Record{libdns.Address{Name: "@", IP: netip.MustParseAddr("203.0.113.7")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteRecords(ctx, "home.dynv6.net.", []libdns.Record{a}); err != nil {
		t.Fatal(err)
	}
	recs, err := p.GetRecords(ctx, "home.dynv6.net.")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		rr := r.RR()
		got = append(got, rr.Type+" "+rr.Name+" "+rr.Data)
	}
	if strings.Join(got, "|") != "A @ 203.0.113.7|TXT _acme-challenge two" {
		t.Fatalf("records %q", got)
	}
	_, err = p.SetRecords(ctx, "home.dynv6.net.", []libdns.Record{libdns.RR{Name: "x", Type: "A", Data: "not-an-ip"}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 422") || !strings.Contains(err.Error(), "data: is not a valid A address") {
		t.Errorf("invalid record: %v", err)
	}
	if _, err := p.GetRecords(ctx, "elsewhere.dynv6.net."); err == nil || !strings.Contains(err.Error(), "zone elsewhere.dynv6.net not found among the token's zones") {
		t.Errorf("foreign zone: %v", err)
	}
}

// canned answers every request with one response.
type canned struct {
	status int
	body   []byte
}

func (c canned) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: c.status, Body: io.NopCloser(bytes.NewReader(c.body)), Header: http.Header{}, Request: req}, nil
}

// FuzzFreeDNSAnswers: whatever DuckDNS or dynv6 answer (status and body), the providers
// return records or an error, never panic, and a DuckDNS update succeeds only on "OK".
func FuzzFreeDNSAnswers(f *testing.F) {
	f.Add(200, []byte("OK\n203.0.113.7\n\nUPDATED"))
	f.Add(200, []byte("KO"))
	f.Add(200, []byte(`{"id":1,"name":"home.dynv6.net","ipv4address":"203.0.113.7","ipv6prefix":"2001:db8::/64"}`))
	f.Add(200, []byte(`[{"id":2,"name":"","type":"MX","data":"mx.example.","priority":10},{"id":3,"name":"a","type":"A","data":"x"}]`))
	f.Add(422, []byte(`{"error":{"name":"ValidationError","message":"Validation failed","fields":[{"name":"data","message":"bad"}]}}`))
	f.Add(500, []byte("\xff"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		hc := &http.Client{Transport: canned{status, body}}
		ctx := context.Background()
		duck := &duckDNS{token: "t", hc: hc}
		_, err := duck.SetRecords(ctx, "home.duckdns.org.", []libdns.Record{libdns.TXT{Name: "@", Text: "v"}})
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if (err == nil) != (status == 200 && first == "OK") {
			t.Fatalf("duckdns: HTTP %d %q gave %v", status, body, err)
		}
		dyn := &dynv6{token: "t", hc: hc}
		recs, err := dyn.GetRecords(ctx, "home.dynv6.net.")
		if err != nil && recs != nil {
			t.Fatalf("dynv6: records %v with error %v", recs, err)
		}
	})
}
