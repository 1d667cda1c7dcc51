package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/ddns/internal/dnspodfake"
)

// TestTC3DocumentedExample checks the client's signer against the worked example of
// Tencent's "Signature v3" page (see dnspodfake.TestSignDocumentedExamples).
func TestTC3DocumentedExample(t *testing.T) {
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json; charset=utf-8")
	hdr.Set("Host", "cvm.tencentcloudapi.com")
	payload := `{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`
	got := tc3Authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "cvm",
		time.Unix(1551113065, 0), hdr, []string{"content-type", "host"}, []byte(payload))
	want := "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, " +
		"SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
	if got != want {
		t.Fatalf("Authorization:\n%s\nwant the documented\n%s", got, want)
	}
}

func newDNSPod(t *testing.T, minTTL uint64) *dnspodfake.Server {
	s := dnspodfake.New([]string{"example.com"}, map[string]dnspodfake.Key{
		"AKIDfull": {SecretKey: "full-secret", Allowed: true},
		"AKIDnone": {SecretKey: "none-secret"},
	}, minTTL)
	t.Cleanup(s.Close)
	return s
}

func dnspod(t *testing.T, s *dnspodfake.Server, typ, id, key string) Provider {
	p, err := New(Config{Type: typ, SecretID: id, SecretKey: key}, Options{HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeRecords(s *dnspodfake.Server) []string {
	var out []string
	for _, r := range s.Records("example.com") {
		if r.Type != "NS" {
			out = append(out, fmt.Sprintf("%s %s %s %d %s", r.Type, r.Name, r.Value, r.TTL, r.Line))
		}
	}
	slices.Sort(out)
	return out
}

// TestTencentCloud drives the DNSPod provider against the signature-checking fake: create,
// list, an address change as one ModifyRecord, TXT append and delete as the DNS-01 solver
// does them, a TTL under the free plan's minimum, and records on other lines left alone.
func TestTencentCloud(t *testing.T) {
	s := newDNSPod(t, 600)
	s.Add("example.com", "A", "www", "203.0.113.80", 600)
	s.AddOnLine("example.com", "AAAA", "derp", "2001:db8::99", "电信")
	p := dnspod(t, s, "tencentcloud", "AKIDfull", "full-secret")
	ctx := context.Background()
	addr := func(name, ip string, ttl time.Duration) []libdns.Record {
		return []libdns.Record{libdns.Address{Name: name, TTL: ttl, IP: netip.MustParseAddr(ip)}}
	}

	if _, err := p.SetRecords(ctx, "example.com.", addr("derp", "2001:db8::1", 600*time.Second)); err != nil {
		t.Fatalf("create: %v", err)
	}
	before := len(s.Calls())
	// 300 s is below the plan's minimum: raised to 600 after the API refuses it.
	if _, err := p.SetRecords(ctx, "example.com.", addr("derp", "2001:db8::2", 300*time.Second)); err != nil {
		t.Fatalf("update: %v", err)
	}
	if calls := s.Calls()[before:]; !slices.Equal(calls, []string{"DescribeRecordList", "ModifyRecord: LimitExceeded.RecordTtlLimit", "ModifyRecord"}) {
		t.Errorf("an address change made the calls %v", calls)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.derp", TTL: 120 * time.Second, Text: "tok-1"}}); err != nil {
		t.Fatalf("append TXT: %v", err)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.derp", TTL: 120 * time.Second, Text: "tok-2"}}); err != nil {
		t.Fatalf("append second TXT: %v", err)
	}
	want := []string{"A www 203.0.113.80 600 默认", "AAAA derp 2001:db8::2 600 默认", "AAAA derp 2001:db8::99 600 电信",
		"TXT _acme-challenge.derp tok-1 600 默认", "TXT _acme-challenge.derp tok-2 600 默认"}
	if got := fakeRecords(s); !slices.Equal(got, want) {
		t.Errorf("records:\n%q\nwant\n%q", got, want)
	}

	all, err := p.GetRecords(ctx, "example.com.")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var got []string
	for _, r := range all {
		rr := r.RR()
		got = append(got, fmt.Sprintf("%T %s %s %s", r, rr.Type, rr.Name, rr.Data))
	}
	slices.Sort(got)
	if !slices.Contains(got, "libdns.Address AAAA derp 2001:db8::2") || !slices.Contains(got, "libdns.TXT TXT _acme-challenge.derp tok-1") ||
		!slices.Contains(got, "libdns.NS NS @ f1g1ns1.dnspod.net.") || len(got) != 7 {
		t.Errorf("GetRecords: %q", got)
	}

	deleted, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.derp", Text: "tok-1"}})
	if err != nil || len(deleted) != 1 {
		t.Fatalf("delete: %v %v", deleted, err)
	}
	// Setting two addresses where one stood modifies one record and creates the other;
	// setting one again deletes the spare. The other line's record is never touched.
	if _, err := p.SetRecords(ctx, "example.com.", append(addr("derp", "2001:db8::3", 600*time.Second), addr("derp", "2001:db8::4", 600*time.Second)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetRecords(ctx, "example.com", addr("derp", "2001:db8::4", 600*time.Second)); err != nil {
		t.Fatal(err)
	}
	want = []string{"A www 203.0.113.80 600 默认", "AAAA derp 2001:db8::4 600 默认", "AAAA derp 2001:db8::99 600 电信",
		"TXT _acme-challenge.derp tok-2 600 默认"}
	if got := fakeRecords(s); !slices.Equal(got, want) {
		t.Errorf("records:\n%q\nwant\n%q", got, want)
	}
	// A name with no records at all: the API answers ResourceNotFound.NoDataOfRecord.
	if recs, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "nothing-here"}}); err != nil || len(recs) != 0 {
		t.Errorf("deleting a name without records: %v %v", recs, err)
	}
}

// TestTencentCloudPages lists a zone larger than one DescribeRecordList page.
func TestTencentCloudPages(t *testing.T) {
	s := newDNSPod(t, 1)
	for i := range 3100 {
		s.Add("example.com", "TXT", fmt.Sprintf("r%d", i), "v", 600)
	}
	recs, err := dnspod(t, s, "dnspod", "AKIDfull", "full-secret").GetRecords(context.Background(), "example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3102 { // 3100 TXT + 2 NS
		t.Errorf("%d records, want 3102", len(recs))
	}
	if n := strings.Count(strings.Join(s.Calls(), ","), "DescribeRecordList"); n != 2 {
		t.Errorf("%d pages requested, want 2", n)
	}
}

// TestTencentCloudErrors checks that refusals come back naming what to fix.
func TestTencentCloudErrors(t *testing.T) {
	s := newDNSPod(t, 600)
	ctx := context.Background()
	skewed := dnspod(t, s, "tencentcloud", "AKIDfull", "full-secret").(*tencentCloud)
	skewed.now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	for _, tt := range []struct {
		name string
		p    Provider
		zone string
		want []string
	}{
		{"wrong secret_key", dnspod(t, s, "tencentcloud", "AKIDfull", "wrong"), "example.com.", []string{"AuthFailure.SignatureFailure", "check secret_key", "RequestId"}},
		{"unknown secret_id", dnspod(t, s, "tencentcloud", "AKIDgone", "x"), "example.com.", []string{"AuthFailure.SecretIdNotFound", "check secret_id"}},
		{"clock off", skewed, "example.com.", []string{"AuthFailure.SignatureExpire", "clock"}},
		{"no permission", dnspod(t, s, "tencentcloud", "AKIDnone", "none-secret"), "example.com.", []string{"UnauthorizedOperation", "CAM policy"}},
		{"unknown zone", dnspod(t, s, "tencentcloud", "AKIDfull", "full-secret"), "example.org.", []string{"InvalidParameterValue.DomainNotExists", "not a domain in this DNSPod account"}},
	} {
		_, err := tt.p.GetRecords(ctx, tt.zone)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, w)
			}
		}
	}
	if len(fakeRecords(s)) != 0 {
		t.Errorf("refused calls changed records: %v", fakeRecords(s))
	}
}

// FuzzTencentCloudAnswer feeds arbitrary API answers to the provider: no panic, no endless
// paging, and every record returned has a name and a type.
func FuzzTencentCloudAnswer(f *testing.F) {
	f.Add([]byte(`{"Response":{"RecordCountInfo":{"TotalCount":1},"RecordList":[{"RecordId":1,"Name":"@","Type":"A","Value":"192.0.2.1","TTL":600,"Line":"默认","LineId":"0"}],"RequestId":"x"}}`))
	f.Add([]byte(`{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"m"},"RequestId":"x"}}`))
	f.Add([]byte(`{"Response":{"RecordCountInfo":{"TotalCount":5},"RecordList":[{"Type":"MX","MX":10,"Value":"mx."}]}}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(string(body)))}, nil
		})}
		recs, err := newTencentCloud("id", "key", hc).GetRecords(context.Background(), "example.com.")
		for _, r := range recs {
			if rr := r.RR(); err != nil || rr.Name == "" || rr.Type == "" {
				t.Fatalf("record %+v (err %v)", rr, err)
			}
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
