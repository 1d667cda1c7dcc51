package acme

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// gatedDNS holds every challenge record at the gate until it opens: the DNS-01 step of an
// order blocks there, so a reload lands mid-order.
type gatedDNS struct {
	DNSProvider
	entered chan struct{}
	open    chan struct{}
}

func (g *gatedDNS) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.DNSProvider.AppendRecords(ctx, zone, recs)
}

// lingering lists the goroutines running an ACME Manager's work: its lego client, its
// DNS-01 solver, or connections to the CA.
func lingering() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "(*Manager)") || strings.Contains(s, "(*dnsSolver)") ||
			strings.Contains(s, "go-acme/lego/v4") || strings.Contains(s, "net/http.(*persistConn)") {
			out = append(out, s)
		}
	}
	return out
}

// TestPebbleReloadMidOrder: a reload stops the acme part while its order waits in the
// DNS-01 step (Pebble, BIND9). The old Manager's Run returns with all of its work stopped
// (no goroutine of it left, not even an idle connection to the CA); the new Manager on the
// same state_dir gets the certificate; and the old one sends nothing more to the CA and
// leaves the store alone even after its DNS step could have gone on.
func TestPebbleReloadMidOrder(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{})
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "no ACME goroutine before the test (the setup's connections closed)", func() bool { return len(lingering()) == 0 })
	stateDir := t.TempDir()
	cfg := Config{
		Email: "admin@example.test", Directory: peb.DirectoryURL, Domains: []string{"derp.example.test"},
		Resolvers: []string{ns.Addr}, PropagationTimeout: 30 * time.Second, CACertFile: peb.CACertFile,
	}
	timing := WithTiming(Timing{PollInterval: 200 * time.Millisecond, RetryMin: time.Second})
	gate := &gatedDNS{DNSProvider: dnsp, entered: make(chan struct{}, 1), open: make(chan struct{})}
	old := &counter{}
	log1, _ := testLog(t)
	m1, err := New(cfg, gate, stateDir, log1, timing,
		WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { old.rt = rt; return old }))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(t.Context())
	done1 := make(chan error, 1)
	go func() { done1 <- m1.Run(ctx1) }()
	select {
	case <-gate.entered: // account registered, order placed, the challenge record on its way
	case <-time.After(2 * time.Minute):
		t.Fatalf("the order never reached its DNS-01 step; pebble log:\n%s", peb.Log())
	}

	// The reload, as the agent's supervisor does it: stop the old part, wait for its Run.
	stop1()
	select {
	case <-done1:
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not return after its part was stopped")
	}
	sent := old.all.Load()
	testenv.WaitFor(t, time.Minute, "the old Manager's goroutines to be gone", func() bool { return len(lingering()) == 0 })

	close(gate.open) // the old order's DNS step could go on now, if anything were left of it
	log2, _ := testLog(t)
	m2, err := New(cfg, dnsp, stateDir, log2, timing)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(t.Context())
	done2 := make(chan error, 1)
	go func() { done2 <- m2.Run(ctx2) }()
	testenv.WaitFor(t, 2*time.Minute, "the new Manager's certificate", func() bool { return m2.Leaf() != nil })
	stop2()
	<-done2

	if n := old.all.Load(); n != sent {
		t.Errorf("the old Manager sent %d requests to the CA after its Run returned", n-sent)
	}
	if m1.Leaf() != nil {
		t.Error("the old Manager put a certificate in service after it was stopped")
	}
	stored, err := m2.store.loadCert(m2.domains)
	served, _ := m2.GetCertificate(nil)
	if err != nil || stored == nil || serial(stored) != serial(served) {
		t.Errorf("the stored certificate is not the new Manager's: %v", err)
	}
	testenv.WaitFor(t, time.Minute, "no ACME goroutine after both stopped", func() bool { return len(lingering()) == 0 })
}
