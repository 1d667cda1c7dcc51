package ddns

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/stun"
)

// startUpdater runs an updater for cfg until the test ends.
func startUpdater(t *testing.T, cfg Config, timing Timing, opts ...Option) *Updater {
	t.Helper()
	log, _ := testLog(t)
	u, err := New(cfg, t.TempDir(), log, append(opts, WithTiming(timing))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return u
}

// TestLANHostBIND9 keeps records for two LAN hosts (a fixed suffix, and the EUI-64
// identifier of a MAC) next to the router's own, and moves them when the LAN prefix
// changes, on a real BIND9 in a network namespace.
func TestLANHostBIND9(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	ipCmd(t, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
	ipCmd(t, "link", "set", "lan1", "up")
	ipCmd(t, "link", "set", "lan0", "up")
	ipCmd(t, "addr", "add", "2001:db8:10::1/64", "dev", "lan0", "nodad")
	ipCmd(t, "addr", "add", "fd00:10::1/64", "dev", "lan0", "nodad") // ULA: never the prefix used

	cfg := Config{
		Provider: rfc2136Provider(ns), Zone: "example.test", TTL: 60 * time.Second,
		Records: []Record{
			{Name: "router", Type: "AAAA", Interface: "lan0"},
			{Name: "nas", Type: "AAAA", Interface: "lan0", Suffix: "::1234"},
			{Name: "cam", Type: "AAAA", Interface: "lan0", MAC: "aa:bb:cc:dd:ee:ff"},
		},
	}
	u := startUpdater(t, cfg, Timing{RetryMin: 200 * time.Millisecond, RetryMax: time.Second, Recheck: time.Hour})
	waitFor(t, ns, "router.example.test", dns.TypeAAAA, []string{"2001:db8:10::1"}, 10*time.Second)
	waitFor(t, ns, "nas.example.test", dns.TypeAAAA, []string{"2001:db8:10::1234"}, 10*time.Second)
	waitFor(t, ns, "cam.example.test", dns.TypeAAAA, []string{"2001:db8:10:0:a8bb:ccff:fedd:eeff"}, 10*time.Second)
	if st := stateOf(u, "nas.example.test", "AAAA"); st.Source != "interface lan0 prefix + ::1234" {
		t.Errorf("status source %q", st.Source)
	}

	// The ISP hands out a new prefix: the router renumbers the LAN, the hosts follow.
	ipCmd(t, "addr", "add", "2001:db8:20::1/64", "dev", "lan0", "nodad")
	ipCmd(t, "addr", "del", "2001:db8:10::1/64", "dev", "lan0")
	d := waitFor(t, ns, "nas.example.test", dns.TypeAAAA, []string{"2001:db8:20::1234"}, 10*time.Second)
	t.Logf("FIGURE ddns LAN host: %v from the prefix change to the new AAAA answered by named", d)
	waitFor(t, ns, "cam.example.test", dns.TypeAAAA, []string{"2001:db8:20:0:a8bb:ccff:fedd:eeff"}, 10*time.Second)
	waitFor(t, ns, "router.example.test", dns.TypeAAAA, []string{"2001:db8:20::1"}, 10*time.Second)
}

// TestSTUNBehindNAT is a box behind a modem in router mode: its own address is private,
// the public one sits on the modem, which masquerades with nftables. The STUN source asks
// edgerelay's own STUN server (relay/stun) beyond the modem and publishes the modem's
// outside address; it asks again on the box's address events and at every recheck.
//
//	box (test's namespace, BIND9) 192.168.77.2 ── 192.168.77.1 modem (masquerade) 203.0.113.1 ── 203.0.113.2 wan (STUN server)
func TestSTUNBehindNAT(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ipBin := testenv.RequireCommand(t, "ip")
	nft := testenv.RequireCommand(t, "nft")
	ns := testenv.StartBIND9(t, "example.test")
	modem, wan := testenv.NewNetNS(t, ipBin), testenv.NewNetNS(t, ipBin)
	in := func(netns string, args ...string) {
		t.Helper()
		if out, err := exec.Command(ipBin, append([]string{"netns", "exec", netns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %s: %v: %s", netns, strings.Join(args, " "), err, out)
		}
	}
	ipCmd(t, "link", "add", "st0", "type", "veth", "peer", "name", "st1", "netns", modem)
	// No IPv6 on the box's link: its link-local address finishing DAD would be an address
	// event, and the test needs to know when the box sees one.
	if out, err := exec.Command("sysctl", "-qw", "net.ipv6.conf.st0.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	ipCmd(t, "addr", "add", "192.168.77.2/24", "dev", "st0")
	ipCmd(t, "link", "set", "st0", "up")
	ipCmd(t, "route", "add", "default", "via", "192.168.77.1")
	in(modem, "ip", "addr", "add", "192.168.77.1/24", "dev", "st1")
	in(modem, "ip", "link", "set", "st1", "up")
	in(modem, "ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan1", "netns", wan)
	in(modem, "ip", "addr", "add", "203.0.113.1/24", "dev", "wan0")
	in(modem, "ip", "link", "set", "wan0", "up")
	in(modem, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Renumbering below adds the new address before removing the old: keep the new one.
	in(modem, "sysctl", "-qw", "net.ipv4.conf.wan0.promote_secondaries=1")
	in(wan, "ip", "addr", "add", "203.0.113.2/24", "dev", "wan1")
	in(wan, "ip", "link", "set", "wan1", "up")
	masq := exec.Command(ipBin, "netns", "exec", modem, nft, "-f", "-")
	masq.Stdin = strings.NewReader(`table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
	}
}
`)
	if out, err := masq.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", modem, err, out)
	}

	var srv *stun.Server
	if err := testenv.RunInNetNS(wan, func() (err error) {
		srv, err = stun.Listen("203.0.113.2:3478", nil)
		return err
	}); err != nil {
		t.Fatalf("STUN server in %s: %v", wan, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	defer srv.Close()

	cfg := Config{
		Provider: rfc2136Provider(ns), Zone: "example.test", TTL: 60 * time.Second,
		Records: []Record{
			{Name: "home", Type: "A", STUN: "203.0.113.2"}, // default port 3478
			{Name: "mesh", Type: "A", STUN: STUNAuto},      // the mesh peers' STUN servers
			{Name: "lan", Type: "A", Interface: "st0"},     // private: never published
		},
	}
	timing := Timing{RetryMin: 200 * time.Millisecond, RetryMax: time.Second, Recheck: time.Hour, STUNTimeout: 3 * time.Second}
	mesh := WithMeshSTUN([]string{"192.0.2.99:3478", "203.0.113.2:3478"}) // the first peer is down
	u := startUpdater(t, cfg, timing, mesh)
	d := waitFor(t, ns, "home.example.test", dns.TypeA, []string{"203.0.113.1"}, 15*time.Second)
	t.Logf("FIGURE ddns STUN source: the NAT's outside address published %v after start", d)
	waitFor(t, ns, "mesh.example.test", dns.TypeA, []string{"203.0.113.1"}, 20*time.Second)
	if got := addrs(t, ns, "lan.example.test", dns.TypeA); len(got) != 0 {
		t.Errorf("published the box's private address: %v", got)
	}
	if st := stateOf(u, "home.example.test", "A"); st.Source != "stun 203.0.113.2" {
		t.Errorf("status source %q", st.Source)
	}

	// The modem gets a new public address. The box sees nothing of it until one of its own
	// addresses changes: that event makes the updater ask again.
	in(modem, "ip", "addr", "add", "203.0.113.7/24", "dev", "wan0")
	in(modem, "ip", "addr", "del", "203.0.113.1/24", "dev", "wan0")
	time.Sleep(time.Second)
	if got := addrs(t, ns, "home.example.test", dns.TypeA); !slices.Equal(got, []string{"203.0.113.1"}) {
		t.Fatalf("home A changed without an event or recheck: %v", got)
	}
	ipCmd(t, "addr", "add", "192.168.77.3/24", "dev", "st0")
	d = waitFor(t, ns, "home.example.test", dns.TypeA, []string{"203.0.113.7"}, 15*time.Second)
	t.Logf("FIGURE ddns STUN source: new outside address published %v after an address event on the box", d)

	// Without any event, the recheck asks again.
	u2 := startUpdater(t, cfg, Timing{Recheck: 2 * time.Second, STUNTimeout: 3 * time.Second}, mesh)
	for deadline := time.Now().Add(20 * time.Second); stateOf(u2, "home.example.test", "A").Published.String() != "203.0.113.7"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("second updater never confirmed the record: %+v", u2.Current())
		}
	}
	in(modem, "ip", "addr", "add", "203.0.113.8/24", "dev", "wan0")
	in(modem, "ip", "addr", "del", "203.0.113.7/24", "dev", "wan0")
	d = waitFor(t, ns, "home.example.test", dns.TypeA, []string{"203.0.113.8"}, 20*time.Second)
	t.Logf("FIGURE ddns STUN source: new outside address published %v later by the periodic recheck (2 s here, 5 min by default)", d)
}
