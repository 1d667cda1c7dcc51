package netfilter

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestRulesFollowTable52: subnet routes tailscaled accepted from other routers (its unicast
// routes in table 52) get a rule too; exit-node default routes, throw routes and routes
// overlapping the LAN do not; a route that goes away takes its rule with it.
func TestRulesFollowTable52(t *testing.T) {
	tp := newTopo(t)
	tp.writeConfig("  lan_interfaces: [lan0.7]\n  firewall: none\n  advertise: false\n")
	for _, r := range []string{
		"route add 10.55.0.0/24 dev tailscale0 table 52",        // accepted subnet route
		"route add 0.0.0.0/0 dev tailscale0 table 52",           // exit node
		"route add 192.168.77.0/25 dev tailscale0 table 52",     // overlaps our LAN
		"route add throw 192.168.0.0/16 table 52",               // tailscaled's LAN exception
		"-6 route add 2001:db8:55::/64 dev tailscale0 table 52", // accepted IPv6 subnet route
	} {
		run(t, "ip", append([]string{"-n", tp.router}, strings.Fields(r)...)...)
	}
	tp.mustHelper("apply")
	r4 := nsRun(t, tp.router, "ip", "-4", "rule", "show", "pref", "1250")
	r6 := nsRun(t, tp.router, "ip", "-6", "rule", "show", "pref", "1250")
	t.Logf("rules:\n%s%s", r4, r6)
	for _, want := range []string{"to 100.64.0.0/10 fwmark", "to 10.55.0.0/24 fwmark"} {
		if !strings.Contains(r4, want) {
			t.Errorf("missing rule %q", want)
		}
	}
	if strings.Count(r4, "\n") != 2 {
		t.Errorf("want exactly 2 IPv4 rules at 1250 (no exit-node, throw or LAN-overlapping route):\n%s", r4)
	}
	if !strings.Contains(r6, "to 2001:db8:55::/64 fwmark") || strings.Count(r6, "\n") != 2 {
		t.Errorf("IPv6 rules at 1250:\n%s", r6)
	}
	// A LAN host behind the router reaches the other router's subnet through table 52.
	if got := nsRun(t, tp.router, "ip", "route", "get", "10.55.0.9"); !strings.Contains(got, "table 52") {
		t.Errorf("route to the accepted subnet: %s", got)
	}

	run(t, "ip", "-n", tp.router, "route", "del", "10.55.0.0/24", "dev", "tailscale0", "table", "52")
	tp.mustHelper("apply")
	if r4 := nsRun(t, tp.router, "ip", "-4", "rule", "show", "pref", "1250"); strings.Contains(r4, "10.55.0.0") || strings.Count(r4, "\n") != 1 {
		t.Errorf("after the route went away:\n%s", r4)
	}
	tp.mustHelper("remove")
	if r := nsRun(t, tp.router, "ip", "rule", "show", "pref", "1250"); r != "" {
		t.Errorf("rules left after remove:\n%s", r)
	}
}

// TestAutoSelection: firewall auto picks fw4 when OpenWrt's fw4 is there, else iptables when
// it works, else nftables, else a clear error; checked in a namespace with PATH holding only
// the programs of each case.
func TestAutoSelection(t *testing.T) {
	tp := newTopo(t)
	tp.writeConfig("  lan_interfaces: [lan0.7]\n  firewall: auto\n  advertise: false\n")
	fw4 := filepath.Join(tp.dir, "fw4-script")
	if err := os.WriteFile(fw4, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bins := map[string]string{"fw4": fw4}
	for _, name := range []string{"nft", "iptables", "ip6tables"} {
		bins[name] = testenv.RequireCommand(t, name)
	}
	for _, tc := range []struct {
		progs []string
		want  string
	}{
		{[]string{"fw4", "nft", "iptables", "ip6tables"}, "firewall backend: fw4"},
		{[]string{"nft", "iptables", "ip6tables"}, "firewall backend: iptables"},
		{[]string{"nft"}, "firewall backend: nftables"},
		{nil, "no usable firewall"},
	} {
		dir := t.TempDir()
		for _, p := range tc.progs {
			if err := os.Symlink(bins[p], filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
		exe, _ := os.Executable()
		ipBin := testenv.RequireCommand(t, "ip")
		cmd := exec.Command(ipBin, "netns", "exec", tp.router, exe)
		cmd.Env = append(os.Environ(), helperEnv+"=show", "EDGERELAY_NF_CONFIG="+tp.cfgPath, "PATH="+dir)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("with %v on PATH: want %q in:\n%s", tc.progs, tc.want, out)
		}
	}
}

// TestAcceptRAFollowsRARoutes: an interface with only static addresses but a route the kernel
// learned from a router advertisement (proto ra) keeps taking RAs once forwarding is on
// (accept_ra=2); one whose routes are static stays at 1.
func TestAcceptRAFollowsRARoutes(t *testing.T) {
	tp := newTopo(t)
	for _, c := range []string{
		"link add wan1 type veth peer name wan1p", "link add wan2 type veth peer name wan2p",
		"addr add 2001:db8:98::5/64 dev wan1", "addr add 2001:db8:97::5/64 dev wan2",
		"link set wan1 up", "link set wan1p up", "link set wan2 up", "link set wan2p up",
		"-6 route add 2001:db8:1000::/48 dev wan1 proto ra",
		"-6 route add 2001:db8:2000::/48 dev wan2 proto static",
	} {
		run(t, "ip", append([]string{"-n", tp.router}, strings.Fields(c)...)...)
	}
	tp.writeConfig("  lan_interfaces: [lan0.7]\n  firewall: none\n  advertise: false\n")
	tp.mustHelper("apply")
	for key, want := range map[string]string{"net/ipv6/conf/wan1/accept_ra": "2", "net/ipv6/conf/wan2/accept_ra": "1"} {
		if got := sysctlIn(t, tp.router, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	tp.mustHelper("remove")
	if got := sysctlIn(t, tp.router, "net/ipv6/conf/wan1/accept_ra"); got != "1" {
		t.Errorf("after remove wan1 accept_ra = %s, want 1", got)
	}
}
