package ddns

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// testLog returns a logger writing to t.Log and to a buffer the test can search.
func testLog(t *testing.T) (*slog.Logger, *testenv.LockedBuffer) {
	buf := &testenv.LockedBuffer{}
	w := io.MultiWriter(buf, tWriter{t})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addrs returns what named serves for name/type, sorted.
func addrs(t *testing.T, ns *testenv.BIND9, name string, qtype uint16) []string {
	t.Helper()
	rrs, err := ns.Lookup(name, qtype)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.TXT:
			out = append(out, strings.Join(v.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

// waitFor polls named until name/type holds exactly want and returns how long it took.
func waitFor(t *testing.T, ns *testenv.BIND9, name string, qtype uint16, want []string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := addrs(t, ns, name, qtype)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s %s: still %v after %v, want %v", name, dns.TypeToString[qtype], got, limit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rfc2136Provider(ns *testenv.BIND9) provider.Config {
	return provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}
}

// TestBIND9 runs the updater against a real BIND9 in a network namespace, watching an
// interface there through netlink.
func TestBIND9(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	const zone = "example.test"

	// Records the updater must leave alone.
	setup, err := newSetup(ns, zone)
	if err != nil {
		t.Fatal(err)
	}
	setup("other", "AAAA", "2001:db8::99")
	setup("derp", "TXT", "keep me")

	// A veth pair stands in for the WAN (this kernel may lack the dummy driver); both ends
	// live in the test's namespace.
	ipCmd(t, "link", "add", "er0", "type", "veth", "peer", "name", "er1")
	ipCmd(t, "link", "set", "er1", "up")
	ipCmd(t, "link", "set", "er0", "up")
	ipCmd(t, "addr", "add", "fd00:1::5/64", "dev", "er0", "nodad")  // ULA
	ipCmd(t, "addr", "add", "fe80::1234/64", "dev", "er0", "nodad") // link-local
	ipCmd(t, "addr", "add", "100.64.0.5/24", "dev", "er0")          // CGNAT IPv4
	ipCmd(t, "addr", "add", "192.0.2.7/32", "dev", "lo")            // not what the A record uses

	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "198.51.100.23")
	}))
	defer echo.Close()

	stateDir := t.TempDir()
	cfg := Config{
		Provider: rfc2136Provider(ns),
		Zone:     zone,
		TTL:      60 * time.Second,
		Records: []Record{
			{Name: "derp", Type: "AAAA", Interface: "er0"},
			{Name: "cgnat", Type: "A", Interface: "er0"},
			{Name: "v4." + zone, Type: "A", URL: echo.URL},
			{Name: "fixed", Type: "AAAA", Value: "2001:db8:ffff::1"},
		},
	}
	timing := Timing{RetryMin: 200 * time.Millisecond, RetryMax: time.Second, Recheck: time.Hour}
	log, logBuf := testLog(t)
	var events []AddressChange
	evc := make(chan AddressChange, 64)
	u, err := New(cfg, stateDir, log, WithTiming(timing), WithSubscriber(func(e AddressChange) { evc <- e }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}

	waitFor(t, ns, "v4."+zone, dns.TypeA, []string{"198.51.100.23"}, 10*time.Second)
	waitFor(t, ns, "fixed."+zone, dns.TypeAAAA, []string{"2001:db8:ffff::1"}, 10*time.Second)
	// Only a ULA and a link-local address so far: nothing to publish.
	time.Sleep(time.Second)
	if got := addrs(t, ns, "derp."+zone, dns.TypeAAAA); len(got) != 0 {
		t.Fatalf("published %v from ULA/link-local only", got)
	}

	// A global address appears: it must reach named within the budget.

	ipCmd(t, "addr", "add", "2001:db8:1::10/64", "dev", "er0", "nodad")
	d1 := waitFor(t, ns, "derp."+zone, dns.TypeAAAA, []string{"2001:db8:1::10"}, 10*time.Second)
	t.Logf("FIGURE ddns first publish: %v from `ip addr add` to the AAAA answered by named (budget 5 s)", d1)

	// Prefix change: new address added, old one removed.
	ipCmd(t, "addr", "add", "2001:db8:2::20/64", "dev", "er0", "nodad")
	ipCmd(t, "addr", "del", "2001:db8:1::10/64", "dev", "er0")
	d2 := waitFor(t, ns, "derp."+zone, dns.TypeAAAA, []string{"2001:db8:2::20"}, 10*time.Second)
	t.Logf("FIGURE ddns swap: %v from `ip addr add`+`del` to the new AAAA answered by named (budget 5 s)", d2)
	if d1 > 5*time.Second || d2 > 5*time.Second {
		t.Logf("WARNING: over the 5 s budget")
	}

	// Other records untouched; the CGNAT address never published, and said so.
	if got := addrs(t, ns, "other."+zone, dns.TypeAAAA); !slices.Equal(got, []string{"2001:db8::99"}) {
		t.Errorf("other AAAA = %v, want untouched 2001:db8::99", got)
	}
	if got := addrs(t, ns, "derp."+zone, dns.TypeTXT); !slices.Equal(got, []string{"keep me"}) {
		t.Errorf("derp TXT = %v, want untouched", got)
	}
	if got := addrs(t, ns, "cgnat."+zone, dns.TypeA); len(got) != 0 {
		t.Errorf("published CGNAT address: %v", got)
	}
	if !strings.Contains(logBuf.String(), "CGNAT") {
		t.Errorf("no log line explains the CGNAT address")
	}

	// DNS server down while the address changes: the updater retries and succeeds once it
	// is back.
	ns.Stop()
	ipCmd(t, "addr", "add", "2001:db8:3::30/64", "dev", "er0", "nodad")
	ipCmd(t, "addr", "del", "2001:db8:2::20/64", "dev", "er0")
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := stateOf(u, "derp."+zone, "AAAA")
		if st.Error != "" && st.Address == netip.MustParseAddr("2001:db8:3::30") {
			t.Logf("while named is down: %s", st.Error)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure recorded while named is down: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	ns.Start()
	d3 := waitFor(t, ns, "derp."+zone, dns.TypeAAAA, []string{"2001:db8:3::30"}, 15*time.Second)
	t.Logf("FIGURE ddns after outage: record updated %v after named came back", d3)
	// named may answer before the updater has read named's reply to its update.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := stateOf(u, "derp."+zone, "AAAA")
		if st.Error == "" && st.Published == st.Address {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state after recovery: %+v", st)
		}
	}

	// Only a deprecated global address left: it is not taken, the record stays.
	ipCmd(t, "addr", "add", "2001:db8:5::50/64", "dev", "er0", "nodad", "preferred_lft", "0")
	ipCmd(t, "addr", "del", "2001:db8:3::30/64", "dev", "er0")
	time.Sleep(2 * time.Second)
	if got := addrs(t, ns, "derp."+zone, dns.TypeAAAA); !slices.Equal(got, []string{"2001:db8:3::30"}) {
		t.Errorf("after only a deprecated address is left: AAAA = %v, want the last good one kept", got)
	}
	if st := stateOf(u, "derp."+zone, "AAAA"); st.Address.IsValid() {
		t.Errorf("selected deprecated address %v", st.Address)
	}
	ipCmd(t, "addr", "add", "2001:db8:6::60/64", "dev", "er0", "nodad")
	waitFor(t, ns, "derp."+zone, dns.TypeAAAA, []string{"2001:db8:6::60"}, 10*time.Second)

	// The WAN interface goes away (a PPPoE redial) and comes back with a new prefix.
	ipCmd(t, "link", "del", "er0")
	time.Sleep(time.Second)
	if got := addrs(t, ns, "derp."+zone, dns.TypeAAAA); !slices.Equal(got, []string{"2001:db8:6::60"}) {
		t.Errorf("while the interface is gone: AAAA = %v, want the last one kept", got)
	}
	ipCmd(t, "link", "add", "er0", "type", "veth", "peer", "name", "er1")
	ipCmd(t, "link", "set", "er1", "up")
	ipCmd(t, "link", "set", "er0", "up")
	ipCmd(t, "addr", "add", "2001:db8:7::70/64", "dev", "er0", "nodad")
	d4 := waitFor(t, ns, "derp."+zone, dns.TypeAAAA, []string{"2001:db8:7::70"}, 10*time.Second)
	t.Logf("FIGURE ddns interface re-created: %v from the new address to the AAAA answered by named", d4)
	stop()

	close(evc)
	for e := range evc {
		events = append(events, e)
	}
	var seq []string
	for _, e := range events {
		if e.Record == "derp."+zone {
			seq = append(seq, fmtAddr(e.Old)+">"+fmtAddr(e.New))
		}
	}
	wantSeq := []string{"none>2001:db8:1::10", "2001:db8:1::10>2001:db8:2::20", "2001:db8:2::20>2001:db8:3::30",
		"2001:db8:3::30>none", "none>2001:db8:6::60", "2001:db8:6::60>none", "none>2001:db8:7::70"}
	if !slices.Equal(seq, wantSeq) {
		t.Errorf("address events %v, want %v", seq, wantSeq)
	}

	fi, err := os.Stat(filepath.Join(stateDir, stateFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}

	// A restart with the same state finds everything in place and writes nothing.
	log2, logBuf2 := testLog(t)
	u2, err := New(cfg, stateDir, log2, WithTiming(timing))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- u2.Run(ctx) }()
	time.Sleep(3 * time.Second)
	cancel()
	<-done
	if strings.Contains(logBuf2.String(), "record updated") {
		t.Errorf("restart rewrote records that were already right:\n%s", logBuf2)
	}
	if st := stateOf(u2, "derp."+zone, "AAAA"); st.Published != netip.MustParseAddr("2001:db8:7::70") {
		t.Errorf("after restart: %+v", st)
	}
}

func stateOf(u *Updater, name, typ string) RecordState {
	for _, s := range u.Current() {
		if s.Name == name && s.Type == typ {
			return s
		}
	}
	return RecordState{}
}

// newSetup returns a function adding a record to the zone with a TSIG-signed update.
func newSetup(ns *testenv.BIND9, zone string) (func(name, typ, data string), error) {
	return func(name, typ, data string) {
		rr, err := dns.NewRR(fmt.Sprintf("%s.%s. 60 IN %s %q", name, zone, typ, data))
		if typ != "TXT" {
			rr, err = dns.NewRR(fmt.Sprintf("%s.%s. 60 IN %s %s", name, zone, typ, data))
		}
		if err != nil {
			panic(err)
		}
		m := new(dns.Msg)
		m.SetUpdate(zone + ".")
		m.Insert([]dns.RR{rr})
		m.SetTsig(ns.KeyName, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{ns.KeyName: ns.Key}}
		r, _, err := c.Exchange(m, ns.Addr)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			panic(fmt.Sprintf("setup update %s: %v %v", name, err, r))
		}
	}, nil
}
