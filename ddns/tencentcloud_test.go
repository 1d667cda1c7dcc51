package ddns

import (
	"context"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/ddns/internal/dnspodfake"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// TestUpdaterTencentCloud runs the updater against the DNSPod fake: the record is created
// with the free plan's minimum TTL, then moved by one ModifyRecord when the address changes.
func TestUpdaterTencentCloud(t *testing.T) {
	s := dnspodfake.New([]string{"example.com"}, map[string]dnspodfake.Key{"AKIDx": {SecretKey: "sk", Allowed: true}}, 600)
	defer s.Close()
	cfg := Config{
		Provider: provider.Config{Type: "dnspod", SecretID: "AKIDx", SecretKey: "sk"},
		Zone:     "example.com", TTL: 300 * time.Second,
		Records: []Record{{Name: "nas", Type: "AAAA", Value: "2001:db8::1"}},
	}
	value := func() string {
		for _, r := range s.Records("example.com") {
			if r.Name == "nas" && r.Type == "AAAA" {
				return r.Value
			}
		}
		return ""
	}
	stateDir := t.TempDir()
	for _, want := range []string{"2001:db8::1", "2001:db8::2"} {
		cfg.Records[0].Value = want
		log, _ := testLog(t)
		u, err := New(cfg, stateDir, log, WithHTTPClient(s.Client()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		done := make(chan struct{})
		go func() { u.Run(ctx); close(done) }()
		for value() != want || stateOf(u, "nas.example.com", "AAAA").Published.String() != want {
			if ctx.Err() != nil {
				t.Fatalf("record is %q, want %s; calls %v; state %+v", value(), want, s.Calls(), u.Current())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The updater writes its state file until Run returns; the temp dir must outlive it.
		cancel()
		<-done
	}
	var aaaa int
	for _, r := range s.Records("example.com") {
		if r.Type == "AAAA" {
			aaaa++
			if r.TTL != 600 {
				t.Errorf("TTL %d, want 600 (the plan's minimum; 300 was asked)", r.TTL)
			}
		}
	}
	if aaaa != 1 {
		t.Errorf("%d AAAA records, want 1: %+v", aaaa, s.Records("example.com"))
	}
}
