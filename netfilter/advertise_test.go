package netfilter

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"tailscale.com/client/local"
	"tailscale.com/ipn"
)

// startTailscaled runs tailscaled in userspace-networking mode inside a namespace of its
// own that holds only loopback: it can reach nothing, and needs no login for prefs.
func startTailscaled(t *testing.T) (*local.Client, string) {
	t.Helper()
	testenv.RequireRoot(t)
	ns := testenv.NewNetNS(t, testenv.RequireCommand(t, "ip"))
	dir, sock := testenv.TailscaledDir(t)
	return testenv.StartTailscaled(t, ns, dir), sock
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func routesOf(t *testing.T, lc *local.Client) []netip.Prefix {
	t.Helper()
	p, err := lc.GetPrefs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := slices.Clone(p.AdvertiseRoutes)
	sortPrefixes(r)
	return r
}

// waitRoutes polls tailscaled's prefs until they equal want (the Run loop reacts to netlink
// events; the deadline is generous and not a speed assertion).
func waitRoutes(t *testing.T, lc *local.Client, want []netip.Prefix, what string) {
	t.Helper()
	sortPrefixes(want)
	start := time.Now()
	var got []netip.Prefix
	for time.Since(start) < 30*time.Second {
		got = routesOf(t, lc)
		if slices.Equal(got, want) {
			t.Logf("%s: routes as wanted after %v: %v", what, time.Since(start).Round(time.Millisecond), got)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: AdvertiseRoutes = %v, want %v", what, got, want)
}

// TestAdvertiseTailscaled drives a real tailscaled: the agent merges the LAN prefixes into
// what is already advertised (exit node, a user route), follows an IPv6 prefix change while
// running, puts its routes back when a `tailscale set` drops them, and withdraws only its
// own routes on remove.
func TestAdvertiseTailscaled(t *testing.T) {
	cli, err := testenv.BuildTool("tailscale.com/cmd/tailscale")
	if err != nil {
		t.Fatal(err)
	}
	lc, sock := startTailscaled(t)
	ctx := context.Background()
	user := mustPrefixes("0.0.0.0/0", "::/0", "10.99.0.0/24")
	if _, err := lc.EditPrefs(ctx, &ipn.MaskedPrefs{Prefs: ipn.Prefs{AdvertiseRoutes: user}, AdvertiseRoutesSet: true}); err != nil {
		t.Fatal(err)
	}

	// A router namespace whose LAN has an IPv4 prefix, a global IPv6 prefix and a ULA.
	tp := &topo{t: t, router: randName() + "-rtr", dir: t.TempDir()}
	tp.stateDir = filepath.Join(tp.dir, "state")
	addNS(t, tp.router)
	nsRun(t, tp.router, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	for _, c := range []string{
		"link add lan0.5 type veth peer name lanp",
		"addr add 192.168.50.1/24 dev lan0.5",
		"addr add 2001:db8:50:1::1/64 dev lan0.5",
		"addr add fd00:50::1/64 dev lan0.5",
		"link set lan0.5 up", "link set lanp up",
	} {
		run(t, "ip", append([]string{"-n", tp.router}, strings.Fields(c)...)...)
	}
	tp.writeConfig(fmt.Sprintf("  lan_interfaces: [lan0.5]\n  firewall: none\n  routes: [auto, 172.16.9.0/24]\n  tailscaled_socket: %s\n", sock))

	// The daemon's loop, as `edgerelay run` would start it.
	stop := tp.startRunLoop()

	mine := mustPrefixes("192.168.50.0/24", "2001:db8:50:1::/64", "172.16.9.0/24")
	waitRoutes(t, lc, append(slices.Clone(user), mine...), "after start")

	// The ISP hands out a new prefix: the new address appears, the old one is deprecated.
	nsRun(t, tp.router, "ip", "addr", "add", "2001:db8:60:1::1/64", "dev", "lan0.5")
	nsRun(t, tp.router, "ip", "addr", "change", "2001:db8:50:1::1/64", "dev", "lan0.5", "preferred_lft", "0", "valid_lft", "600")
	mine = mustPrefixes("192.168.50.0/24", "2001:db8:60:1::/64", "172.16.9.0/24")
	waitRoutes(t, lc, append(slices.Clone(user), mine...), "after prefix change")

	// The well-known trap: a later `tailscale set` (or up) naming only the user's routes
	// drops ours; the IPN bus tells the loop, which puts them back next to the user's.
	out, err := exec.Command(cli, "--socket="+sock, "set", "--advertise-routes=0.0.0.0/0,::/0,10.99.0.0/24").CombinedOutput()
	if err != nil {
		t.Fatalf("tailscale set: %v\n%s", err, out)
	}
	waitRoutes(t, lc, append(slices.Clone(user), mine...), "after `tailscale set --advertise-routes` dropped ours")
	stop()

	if show := tp.mustHelper("show"); strings.Contains(show, "MISSING") || !strings.Contains(show, "advertise 2001:db8:60:1::/64") {
		t.Errorf("show:\n%s", show)
	}
	tp.mustHelper("remove")
	waitRoutes(t, lc, slices.Clone(user), "after remove")
}
