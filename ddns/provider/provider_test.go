package provider

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/ddns/internal/cloudflarefake"
)

func TestNew(t *testing.T) {
	key := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
	for _, tt := range []struct {
		name    string
		p       Config
		wantErr string // "" = ok
	}{
		{"cloudflare", Config{Type: "cloudflare", APIToken: "x"}, ""},
		{"cloudflare empty", Config{Type: "cloudflare"}, "api_token: required"},
		{"rfc2136", Config{Type: "rfc2136", Server: "ns.example.com", KeyName: "k", Key: key}, ""},
		{"rfc2136 alg", Config{Type: "rfc2136", Server: "[2001:db8::1]:5353", KeyName: "k", KeyAlg: "HMAC-SHA512.", Key: key}, ""},
		{"rfc2136 bad alg", Config{Type: "rfc2136", Server: "ns", KeyName: "k", KeyAlg: "rot13", Key: key}, "key_alg"},
		{"rfc2136 no key", Config{Type: "rfc2136", Server: "ns"}, "TSIG"},
		{"rfc2136 bad key", Config{Type: "rfc2136", Server: "ns", KeyName: "k", Key: "not base64!"}, "base64"},
		{"rfc2136 no server", Config{Type: "rfc2136", KeyName: "k", Key: key}, "server"},
		{"alidns", Config{Type: "alidns", AccessKeyID: "id", AccessKeySecret: "s"}, ""},
		{"alidns no secret", Config{Type: "alidns", AccessKeyID: "id"}, "access_key_secret"},
		{"huaweicloud", Config{Type: "huaweicloud", AccessKeyID: "id", AccessKeySecret: "s", Region: "cn-north-4"}, ""},
		{"tencentcloud", Config{Type: "tencentcloud", SecretID: "AKIDx", SecretKey: "k"}, ""},
		{"tencentcloud no key", Config{Type: "tencentcloud", SecretID: "AKIDx"}, "secret_key"},
		{"duckdns", Config{Type: "duckdns", APIToken: "x"}, ""},
		{"duckdns empty", Config{Type: "duckdns"}, "api_token: required"},
		{"unknown", Config{Type: "route53"}, "one of alidns, cloudflare, dnspod, duckdns, dynv6, huaweicloud, rfc2136, tencentcloud"},
		{"empty", Config{}, "type: required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.p, Options{})
			if tt.wantErr == "" {
				if err != nil || p == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWithPort(t *testing.T) {
	for in, want := range map[string]string{
		"ns.example.com": "ns.example.com:53", "192.0.2.1": "192.0.2.1:53", "192.0.2.1:5353": "192.0.2.1:5353",
		"2001:db8::1": "[2001:db8::1]:53", "[2001:db8::1]": "[2001:db8::1]:53", "[2001:db8::1]:54": "[2001:db8::1]:54",
		"": "", "a b": "", "x/y": "",
	} {
		got, err := withPort(in, "53")
		if (want == "") != (err != nil) || got != want {
			t.Errorf("withPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzNew checks that no provider config crashes New or is accepted with missing secrets.
func FuzzNew(f *testing.F) {
	f.Add("rfc2136", "ns:53", "k", "hmac-sha256", "c2VjcmV0", "")
	f.Add("cloudflare", "", "", "", "", "tok")
	f.Add("alidns", "", "", "", "", "")
	f.Add("x", "[::1", "", "", "", "")
	f.Fuzz(func(t *testing.T, typ, server, keyName, alg, key, token string) {
		p, err := New(Config{Type: typ, Server: server, KeyName: keyName, KeyAlg: alg, Key: key, APIToken: token,
			AccessKeyID: keyName, AccessKeySecret: key, SecretID: keyName, SecretKey: key}, Options{})
		if err == nil && p == nil {
			t.Fatal("nil provider without error")
		}
		if err == nil && !slices.Contains(Types, typ) {
			t.Fatalf("accepted unknown type %q", typ)
		}
	})
}

func newFake(t *testing.T) *cloudflarefake.Server {
	s := cloudflarefake.New([]string{"example.com", "other.org"}, map[string]cloudflarefake.Perms{
		"full":     {ZoneRead: true, DNSRead: true, DNSEdit: true},
		"readonly": {ZoneRead: true, DNSRead: true},
		"nozone":   {DNSRead: true, DNSEdit: true},
	})
	t.Cleanup(s.Close)
	return s
}

func cf(t *testing.T, s *cloudflarefake.Server, token string) Provider {
	p, err := New(Config{Type: "cloudflare", APIToken: token}, Options{HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCloudflare drives libdns/cloudflare through our wrapper against the local API fake:
// zone lookup, create, list, update, delete, with zones given with and without the dot.
func TestCloudflare(t *testing.T) {
	s := newFake(t)
	s.Add("example.com", "MX", "@", "mail.example.com", 300)
	s.Add("example.com", "AAAA", "www", "2001:db8::80", 300)
	p := cf(t, s, "full")
	ctx := context.Background()

	recs, err := p.SetRecords(ctx, "example.com.", []libdns.Record{libdns.Address{Name: "derp", TTL: 300 * time.Second, IP: netip.MustParseAddr("2001:db8::1")}})
	if err != nil || len(recs) != 1 {
		t.Fatalf("create: %v %v", recs, err)
	}
	if _, err := p.SetRecords(ctx, "example.com", []libdns.Record{libdns.Address{Name: "derp", TTL: 60 * time.Second, IP: netip.MustParseAddr("2001:db8::2")}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.derp", TTL: 120 * time.Second, Text: "tok-1"}}); err != nil {
		t.Fatalf("append TXT: %v", err)
	}
	all, err := p.GetRecords(ctx, "example.com.")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var got []string
	for _, r := range all {
		rr := r.RR()
		got = append(got, rr.Type+" "+rr.Name+" "+rr.Data)
	}
	slices.Sort(got)
	want := []string{"AAAA derp 2001:db8::2", "AAAA www 2001:db8::80", "MX @ 0 mail.example.com.", `TXT _acme-challenge.derp tok-1`}
	if !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.derp", Text: "tok-1"}}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n := len(s.Records("example.com")); n != 3 {
		t.Errorf("%d records left, want 3: %+v", n, s.Records("example.com"))
	}
	for _, r := range s.Records("example.com") {
		if r.Name == "derp.example.com" && (r.Content != "2001:db8::2" || r.TTL != 60) {
			t.Errorf("derp = %+v", r)
		}
	}
}

// TestCloudflareErrors checks that API refusals come back as errors that say what to fix.
func TestCloudflareErrors(t *testing.T) {
	s := newFake(t)
	ctx := context.Background()
	rec := []libdns.Record{libdns.Address{Name: "derp", TTL: 300 * time.Second, IP: netip.MustParseAddr("2001:db8::1")}}

	_, err := cf(t, s, "readonly").SetRecords(ctx, "example.com.", rec)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), `"Zone / DNS / Edit"`) {
		t.Errorf("read-only token: %v; want a 403 naming Zone / DNS / Edit", err)
	} else {
		t.Logf("read-only token: %v", err)
	}
	_, err = cf(t, s, "nozone").SetRecords(ctx, "example.com.", rec)
	if err == nil || !strings.Contains(err.Error(), `"Zone / Zone / Read"`) {
		t.Errorf("token without zone read: %v", err)
	}
	_, err = cf(t, s, "full").SetRecords(ctx, "missing.net.", rec)
	if err == nil || !strings.Contains(err.Error(), "zone missing.net not found") {
		t.Errorf("unknown zone: %v", err)
	}
	_, err = cf(t, s, "bogus").GetRecords(ctx, "example.com.")
	if err == nil || !strings.Contains(err.Error(), "Invalid API Token") {
		t.Errorf("unknown token: %v", err)
	}
	_, err = cf(t, s, "full").SetRecords(ctx, "example.com.", []libdns.Record{libdns.Address{Name: "derp", TTL: 5 * time.Second, IP: netip.MustParseAddr("2001:db8::1")}})
	if err == nil || !strings.Contains(err.Error(), "Invalid TTL") {
		t.Errorf("bad TTL: %v", err)
	}
}
