package netfilter

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// mustReach dials from the peer to the LAN host and returns the source the LAN host saw.
func mustReach(t *testing.T, ns, addr string) string {
	t.Helper()
	seen, err := dial(ns, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	return seen
}

func mustNotReach(t *testing.T, ns, addr, when string) {
	t.Helper()
	if seen, ok := reachable(ns, addr); ok {
		t.Fatalf("%s: %s reached %s (seen as %s), want blocked", when, ns, addr, seen)
	}
}

func subnetYAML(firewall string, snat bool) string {
	return fmt.Sprintf("  lan_interfaces: [lan0.7]\n  tailscale_interface: tailscale0\n  firewall: %s\n  snat: %v\n  mss_clamp: true\n  advertise: false\n", firewall, snat)
}

// checkApplied verifies the kernel settings and rules the apply made in the router namespace.
func checkApplied(t *testing.T, tp *topo) {
	t.Helper()
	for key, want := range map[string]string{
		"net/ipv4/ip_forward":                "1",
		"net/ipv6/conf/all/forwarding":       "1",
		"net/ipv6/conf/wan0/accept_ra":       "2", // SLAAC kept while forwarding
		"net/ipv4/conf/all/rp_filter":        "2",
		"net/ipv4/conf/lan0.7/rp_filter":     "2", // a dotted name (VLAN) as a sysctl path
		"net/ipv6/conf/lan0.7/accept_ra":     "1", // static addresses only: untouched
		"net/ipv4/conf/tailscale0/rp_filter": "0",
	} {
		if got := sysctlIn(t, tp.router, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	r4 := nsRun(t, tp.router, "ip", "-4", "rule", "show", "pref", "1250")
	r6 := nsRun(t, tp.router, "ip", "-6", "rule", "show", "pref", "1250")
	if !strings.Contains(r4, "from all to 100.64.0.0/10 fwmark 0/0x80000 lookup 52") || strings.Count(r4, "\n") != 1 {
		t.Errorf("ip -4 rule at 1250:\n%s", r4)
	}
	if !strings.Contains(r6, "from all to fd7a:115c:a1e0::/48 fwmark 0/0x80000 lookup 52") || strings.Count(r6, "\n") != 1 {
		t.Errorf("ip -6 rule at 1250:\n%s", r6)
	}
	// The rule sends traffic for the tailnet to table 52, except tailscaled's own (bypass mark).
	if got := nsRun(t, tp.router, "ip", "route", "get", tp.peerIP4); !strings.Contains(got, "dev tailscale0 table 52") {
		t.Errorf("route to the peer: %s", got)
	}
	if out, err := exec.Command("ip", "-n", tp.router, "route", "get", tp.peerIP4, "mark", "0x80000").CombinedOutput(); err == nil {
		t.Errorf("tailscaled's own (marked) traffic was diverted to table 52: %s", out)
	}
}

// checkMSS starts TCP from the LAN host to the peer and returns the MSS of the SYN as the LAN
// host sent it and as it reached the peer over the 1280-MTU link.
func checkMSS(t *testing.T, tp *topo, peerIP string) {
	t.Helper()
	addr := listen(t, tp.peer, net.JoinHostPort(peerIP, "0"))
	atPeer := capture(t, tp.peer, "eth0", port(t, addr))
	atLAN := capture(t, tp.lan, "eth0", port(t, addr))
	seen := mustReach(t, tp.lan, addr)
	if seen != tp.lanIP4 && seen != tp.lanIP6 {
		t.Errorf("peer saw LAN host as %s, want its own address (no SNAT towards the tailnet)", seen)
	}
	sent, err := atLAN()
	if err != nil {
		t.Fatal(err)
	}
	got, err := atPeer()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TCP SYN to %s: MSS %d as sent by the LAN host, %d on arrival at the peer", peerIP, sent, got)
	if got > 1240 {
		t.Errorf("MSS on arrival %d, want <= 1240 (clamped to the 1280 MTU)", got)
	}
	if sent <= 1240 {
		t.Errorf("LAN host sent MSS %d: the test cannot tell clamping from the sender's own MTU", sent)
	}
}

// forwardScenario is the whole proof for one firewall backend: blocked before, forwarded and
// masqueraded after, MSS clamped, idempotent, and fully undone by remove.
func forwardScenario(t *testing.T, backend string) {
	tp := newTopo(t)
	if backend == BackendIPTables {
		testenv.RequireCommand(t, "iptables")
		// A host firewall that drops forwarded traffic unless told otherwise.
		nsRun(t, tp.router, "iptables", "-P", "FORWARD", "DROP")
		nsRun(t, tp.router, "ip6tables", "-P", "FORWARD", "DROP")
		// tailscaled in netfilter mode "on": its ts-forward chain marks traffic from the
		// tailscale interface, and its own ip rules sit at 5210-5270. Ours must leave them be.
		nsRun(t, tp.router, "iptables", "-N", "ts-forward")
		nsRun(t, tp.router, "iptables", "-A", "ts-forward", "-i", "tailscale0", "-j", "MARK", "--set-xmark", "0x40000/0xff0000")
		nsRun(t, tp.router, "iptables", "-I", "FORWARD", "1", "-j", "ts-forward")
		nsRun(t, tp.router, "ip", "rule", "add", "pref", "5210", "fwmark", "0x80000/0xff0000", "lookup", "main")
		nsRun(t, tp.router, "ip", "rule", "add", "pref", "5250", "fwmark", "0x80000/0xff0000", "unreachable")
	}
	testenv.RequireCommand(t, "nft")
	tp.writeConfig(subnetYAML(backend, true))
	srv4 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP4, "0"))
	srv6 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP6, "0"))
	before := tp.snapshot()

	mustNotReach(t, tp.peer, srv4, "before apply")
	mustNotReach(t, tp.peer, srv6, "before apply")

	tp.mustHelper("apply")
	checkApplied(t, tp)
	// The LAN host has no route to the tailnet: only SNAT to the router's address lets it answer.
	if seen := mustReach(t, tp.peer, srv4); seen != tp.rtrLAN4 {
		t.Errorf("LAN host saw the peer as %s, want the router %s (SNAT)", seen, tp.rtrLAN4)
	}
	if seen := mustReach(t, tp.peer, srv6); seen != tp.rtrLAN6 {
		t.Errorf("LAN host saw the peer as %s, want the router %s (SNAT)", seen, tp.rtrLAN6)
	}
	once := tp.snapshot()
	tp.mustHelper("apply")
	sameSnapshot(t, "second apply", once, tp.snapshot())
	if show := tp.mustHelper("show"); strings.Contains(show, "MISSING") || !strings.Contains(show, "firewall backend: "+backend) {
		t.Errorf("show after apply:\n%s", show)
	}

	tp.lanRouteBack()
	checkMSS(t, tp, tp.peerIP4)
	checkMSS(t, tp, tp.peerIP6)

	tp.mustHelper("remove")
	after := tp.snapshot()
	sameSnapshot(t, "remove", before, after)
	mustNotReach(t, tp.peer, srv4, "after remove")
	if show := tp.mustHelper("show"); !strings.Contains(show, "MISSING") {
		t.Errorf("show after remove reports everything in place:\n%s", show)
	}
	tp.mustHelper("remove") // removing twice is harmless
	sameSnapshot(t, "second remove", before, tp.snapshot())
}

func TestForwardIPTables(t *testing.T) { forwardScenario(t, BackendIPTables) }

func TestForwardNFTables(t *testing.T) { forwardScenario(t, BackendNFTables) }

// TestNoSNAT: with snat off the LAN host sees the peer's own tailnet address.
func TestNoSNAT(t *testing.T) {
	for _, backend := range []string{BackendIPTables, BackendNFTables} {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			testenv.RequireCommand(t, map[string]string{BackendIPTables: "iptables", BackendNFTables: "nft"}[backend])
			tp.writeConfig(subnetYAML(backend, false))
			tp.lanRouteBack()
			srv4 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP4, "0"))
			srv6 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP6, "0"))
			before := tp.snapshot()
			tp.mustHelper("apply")
			if seen := mustReach(t, tp.peer, srv4); seen != tp.peerIP4 {
				t.Errorf("LAN host saw %s, want the peer %s", seen, tp.peerIP4)
			}
			if seen := mustReach(t, tp.peer, srv6); seen != tp.peerIP6 {
				t.Errorf("LAN host saw %s, want the peer %s", seen, tp.peerIP6)
			}
			tp.mustHelper("remove")
			sameSnapshot(t, "remove", before, tp.snapshot())
		})
	}
}

// fakeFW4 is what `fw4 reload` does to the ruleset, reduced to the chains we use: rebuild
// table inet fw4 (forward policy drop, as OpenWrt's default zones give) and pull in the
// chain-pre include files.
const fakeFW4 = `#!/bin/sh
set -e
nft -f - <<EOF
table inet fw4
flush table inet fw4
table inet fw4 {
	chain forward {
		type filter hook forward priority filter; policy drop;
		include "%[1]s/chain-pre/forward/*.nft"
		ct state established,related accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		include "%[1]s/chain-pre/srcnat/*.nft"
	}
	chain mangle_forward {
		type filter hook forward priority mangle; policy accept;
		include "%[1]s/chain-pre/mangle_forward/*.nft"
	}
}
EOF
`

// TestFW4 proves that under fw4 an iptables ACCEPT does not get traffic past fw4's drop,
// and that the fw4 backend's include files do, surviving `fw4 reload`.
func TestFW4(t *testing.T) {
	tp := newTopo(t)
	testenv.RequireCommand(t, "nft")
	testenv.RequireCommand(t, "iptables")
	tp.fw4Dir = filepath.Join(tp.dir, "nftables.d")
	script := filepath.Join(tp.dir, "fw4")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(fakeFW4, tp.fw4Dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	tp.fw4Reload = script + " reload"
	nsRun(t, tp.router, script, "reload")
	srv4 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP4, "0"))
	srv6 := listen(t, tp.lan, net.JoinHostPort(tp.lanIP6, "0"))
	before := tp.snapshot()

	// iptables: forwarding on, ACCEPT rules in place, and still fw4's drop wins.
	tp.writeConfig(subnetYAML(BackendIPTables, true))
	tp.mustHelper("apply")
	if show := tp.mustHelper("show"); strings.Contains(show, "MISSING") {
		t.Errorf("iptables rules not in place:\n%s", show)
	}
	mustNotReach(t, tp.peer, srv4, "iptables ACCEPT under fw4")

	// fw4: the backend switch removes the iptables chains and makes fw4 carry the rules.
	tp.writeConfig(subnetYAML(BackendFW4, true))
	tp.mustHelper("apply")
	if ipt := nsRun(t, tp.router, "iptables-save"); strings.Contains(ipt, "edgerelay") {
		t.Errorf("iptables chains left after switching to fw4:\n%s", ipt)
	}
	if seen := mustReach(t, tp.peer, srv4); seen != tp.rtrLAN4 {
		t.Errorf("LAN host saw %s, want the router %s (SNAT through fw4 srcnat)", seen, tp.rtrLAN4)
	}
	if seen := mustReach(t, tp.peer, srv6); seen != tp.rtrLAN6 {
		t.Errorf("LAN host saw %s, want the router %s", seen, tp.rtrLAN6)
	}
	nsRun(t, tp.router, script, "reload")
	if seen := mustReach(t, tp.peer, srv4); seen != tp.rtrLAN4 {
		t.Errorf("after fw4 reload: LAN host saw %s", seen)
	}
	fwd := nsRun(t, tp.router, "nft", "list", "chain", "inet", "fw4", "forward")
	t.Logf("fw4 forward chain after reload:\n%s", fwd)
	if strings.Count(fwd, `comment "edgerelay"`) != 2 {
		t.Errorf("want 2 edgerelay rules in fw4 forward, got:\n%s", fwd)
	}
	once := tp.snapshot()
	tp.mustHelper("apply")
	sameSnapshot(t, "second apply", once, tp.snapshot())
	if show := tp.mustHelper("show"); strings.Contains(show, "MISSING") || !strings.Contains(show, "firewall backend: fw4") {
		t.Errorf("show:\n%s", show)
	}
	tp.lanRouteBack()
	checkMSS(t, tp, tp.peerIP4)
	checkMSS(t, tp, tp.peerIP6)

	tp.mustHelper("remove")
	files, _ := filepath.Glob(filepath.Join(tp.fw4Dir, "*", "*", "*.nft"))
	if len(files) != 0 {
		t.Errorf("include files left: %v", files)
	}
	sameSnapshot(t, "remove", before, tp.snapshot())
	mustNotReach(t, tp.peer, srv4, "after remove")
}

// TestFW4ReloadFailureRollsBack: if fw4 cannot load the ruleset with our includes, they are
// taken out again and fw4 reloaded, so the router keeps its firewall.
func TestFW4ReloadFailureRollsBack(t *testing.T) {
	tp := newTopo(t)
	testenv.RequireCommand(t, "nft")
	tp.fw4Dir = filepath.Join(tp.dir, "nftables.d")
	script := filepath.Join(tp.dir, "fw4")
	log := filepath.Join(tp.dir, "reloads")
	body := fmt.Sprintf("#!/bin/sh\necho reload >> %s\nif ls %s/chain-pre/*/*.nft >/dev/null 2>&1; then echo 'Error: syntax error' >&2; exit 1; fi\n", log, tp.fw4Dir)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	tp.fw4Reload = script + " reload"
	tp.writeConfig(subnetYAML(BackendFW4, true))
	_, err := tp.helper("apply")
	if err == nil || !strings.Contains(err.Error(), "taken out again") {
		t.Fatalf("apply with a failing fw4 reload: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(tp.fw4Dir, "*", "*", "*.nft")); len(files) != 0 {
		t.Errorf("include files left after a failed reload: %v", files)
	}
	if b, _ := os.ReadFile(log); strings.Count(string(b), "reload") != 2 {
		t.Errorf("want a failed reload then a clean one, got %q", b)
	}
	tp.mustHelper("remove")
}
