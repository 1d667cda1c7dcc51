package netfilter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// waitFor polls cond (generous deadline; the time taken is logged, never asserted).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	t.Logf("%s after %v", what, testenv.WaitFor(t, 30*time.Second, what, cond).Round(time.Millisecond))
}

// TestRunFollowsEvents: the Run loop re-applies when the tailscale interface appears after
// start (its strict rp_filter gets loosened) and when tailscaled adds an accepted subnet route
// to table 52 (a rule follows), and leaves everything in place when it stops.
func TestRunFollowsEvents(t *testing.T) {
	tp := &topo{t: t, router: randName() + "-rtr", dir: t.TempDir()}
	tp.stateDir = filepath.Join(tp.dir, "state")
	testenv.RequireRoot(t)
	addNS(t, tp.router)
	for _, c := range []string{
		"link add lan0.7 type veth peer name lanp",
		"addr add 192.168.77.1/24 dev lan0.7",
		"link set lan0.7 up", "link set lanp up",
	} {
		run(t, "ip", append([]string{"-n", tp.router}, strings.Fields(c)...)...)
	}
	// Interfaces created from now on start with strict reverse-path filtering.
	nsRun(t, tp.router, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	tp.writeConfig("  lan_interfaces: [lan0.7]\n  firewall: none\n  advertise: false\n")

	stop := tp.startRunLoop()
	waitFor(t, "forwarding on", func() bool { return sysctlIn(t, tp.router, "net.ipv4.ip_forward") == "1" })

	run(t, "ip", "-n", tp.router, "link", "add", "tailscale0", "mtu", "1280", "type", "veth", "peer", "name", "tsp")
	run(t, "ip", "-n", tp.router, "link", "set", "tailscale0", "up")
	waitFor(t, "rp_filter loosened on the new tailscale interface", func() bool {
		return sysctlIn(t, tp.router, "net/ipv4/conf/tailscale0/rp_filter") == "2"
	})
	run(t, "ip", "-n", tp.router, "route", "add", "10.55.0.0/24", "dev", "tailscale0", "table", "52")
	waitFor(t, "rule for the accepted subnet route", func() bool {
		return strings.Contains(nsRun(t, tp.router, "ip", "rule", "show", "pref", "1250"), "to 10.55.0.0/24")
	})
	stop()
	if v := sysctlIn(t, tp.router, "net.ipv4.ip_forward"); v != "1" {
		t.Errorf("stopping the loop undid forwarding (ip_forward=%s); it must stay", v)
	}
	tp.mustHelper("remove")
	for key, want := range map[string]string{"net.ipv4.ip_forward": "0", "net/ipv4/conf/tailscale0/rp_filter": "1"} {
		if got := sysctlIn(t, tp.router, key); got != want {
			t.Errorf("after remove %s = %s, want %s", key, got, want)
		}
	}
	if r := nsRun(t, tp.router, "ip", "rule", "show", "pref", "1250"); r != "" {
		t.Errorf("rules left after remove:\n%s", r)
	}
}
