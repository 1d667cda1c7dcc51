package netfilter

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// topo is three namespaces: a LAN host, the router (where the code under test runs) and a
// tailnet peer reached over a veth named like the tailscale interface, MTU 1280. The router
// reaches the peer only through table 52 (as tailscaled sets it up), the LAN host has no
// route back to the tailnet.
type topo struct {
	t                 *testing.T
	lan, router, peer string // namespace names
	dir               string
	stateDir, cfgPath string
	lanIP4, lanIP6    string // LAN host
	rtrLAN4, rtrLAN6  string // router's LAN address
	peerIP4, peerIP6  string
	fw4Dir, fw4Reload string
}

func randName() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "er" + hex.EncodeToString(b)
}

// addNS creates network namespace ns, removed when the test ends, with IPv4 forwarding off:
// a new namespace copies the host's net.ipv4.ip_forward (devconf_inherit_init_net=0), and
// the tests expect the kernel's default, as on a router that edgerelay has not touched.
func addNS(t testing.TB, ns string) {
	t.Helper()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nsRun runs a command inside a namespace.
func nsRun(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

func newTopo(t *testing.T) *topo {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	base := randName()
	tp := &topo{
		t: t, lan: base + "-lan", router: base + "-rtr", peer: base + "-peer",
		dir:    t.TempDir(),
		lanIP4: "192.168.77.2", lanIP6: "2001:db8:77::2",
		rtrLAN4: "192.168.77.1", rtrLAN6: "2001:db8:77::1",
		peerIP4: "100.64.0.2", peerIP6: "fd7a:115c:a1e0::2",
	}
	tp.stateDir = filepath.Join(tp.dir, "state")
	for _, ns := range []string{tp.lan, tp.router, tp.peer} {
		addNS(t, ns)
		// No duplicate address detection: addresses are usable at once.
		nsRun(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
		nsRun(t, ns, "ip", "link", "set", "lo", "up")
	}
	sh := func(ns string, cmds ...string) {
		for _, c := range cmds {
			run(t, "ip", append([]string{"-n", ns}, strings.Fields(c)...)...)
		}
	}
	// Interfaces are created inside the namespaces: the host's are never touched.
	sh(tp.router,
		"link add lan0.7 type veth peer name eth0 netns "+tp.lan,
		"link add tailscale0 mtu 1280 type veth peer name eth0 netns "+tp.peer,
		"link add wan0 type veth peer name wan0p",
		"addr add 192.168.77.1/24 dev lan0.7",
		"addr add 2001:db8:77::1/64 dev lan0.7",
		"addr add 100.64.0.1/32 dev tailscale0",
		"addr add fd7a:115c:a1e0::1/128 dev tailscale0",
		// A SLAAC-like (non-permanent) global address: the box's own IPv6 on its WAN.
		"addr add 2001:db8:99::5/64 dev wan0 valid_lft 3600 preferred_lft 3600",
		"link set lan0.7 up", "link set tailscale0 up", "link set wan0 up", "link set wan0p up",
		// tailscaled puts peer routes into table 52 only.
		"route add 100.64.0.2/32 dev tailscale0 table 52",
		"-6 route add fd7a:115c:a1e0::2/128 dev tailscale0 table 52",
	)
	sh(tp.lan,
		"addr add 192.168.77.2/24 dev eth0",
		"addr add 2001:db8:77::2/64 dev eth0",
		"link set eth0 up",
	)
	sh(tp.peer,
		"link set eth0 mtu 1280",
		"addr add 100.64.0.2/32 dev eth0",
		"addr add fd7a:115c:a1e0::2/128 dev eth0",
		"link set eth0 up",
		"route add 100.64.0.1/32 dev eth0",
		"route add 192.168.77.0/24 via 100.64.0.1 dev eth0",
		"-6 route add fd7a:115c:a1e0::1/128 dev eth0",
		"-6 route add 2001:db8:77::/64 via fd7a:115c:a1e0::1 dev eth0",
	)
	// Strict reverse-path filtering as some distributions ship it: the agent must loosen it.
	nsRun(t, tp.router, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net/ipv4/conf/lan0.7/rp_filter=1")
	return tp
}

// lanRouteBack gives the LAN host routes to the tailnet via the router (the router is its
// gateway), for tests of traffic started from the LAN and of snat: false.
func (tp *topo) lanRouteBack() {
	run(tp.t, "ip", "-n", tp.lan, "route", "add", "100.64.0.0/10", "via", tp.rtrLAN4)
	run(tp.t, "ip", "-n", tp.lan, "-6", "route", "add", "fd7a:115c:a1e0::/48", "via", tp.rtrLAN6)
}

// writeConfig writes the YAML config the helper process loads.
func (tp *topo) writeConfig(subnet string) {
	tp.cfgPath = filepath.Join(tp.dir, "edgerelay.yaml")
	y := fmt.Sprintf("state_dir: %s\nrelay: {enabled: false}\nsubnet:\n%s", tp.stateDir, subnet)
	if err := os.WriteFile(tp.cfgPath, []byte(y), 0o600); err != nil {
		tp.t.Fatal(err)
	}
}

// helperCmd is this test binary re-executed in the router namespace in helper mode.
func (tp *topo) helperCmd(mode string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		tp.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.router, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "EDGERELAY_NF_CONFIG="+tp.cfgPath,
		"EDGERELAY_NF_FW4_DIR="+tp.fw4Dir, "EDGERELAY_NF_FW4_RELOAD="+tp.fw4Reload)
	return cmd
}

// helper runs the code under test in the router namespace; it returns stdout and the error.
func (tp *topo) helper(mode string) (string, error) {
	cmd := tp.helperCmd(mode)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	tp.t.Logf("%s:\n%s%s", mode, stderr.String(), stdout.String())
	if err != nil {
		return stdout.String(), fmt.Errorf("helper %s: %v: %s", mode, err, stderr.String())
	}
	return stdout.String(), nil
}

// startRunLoop starts the daemon's loop in the router namespace, as `edgerelay run` would.
// stop (also run at cleanup) sends SIGTERM, waits, and logs what the loop printed.
func (tp *topo) startRunLoop() (stop func()) {
	runner := tp.helperCmd("run")
	var logs strings.Builder
	runner.Stdout, runner.Stderr = &logs, &logs
	if err := runner.Start(); err != nil {
		tp.t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			runner.Process.Signal(syscall.SIGTERM)
			runner.Wait()
			tp.t.Logf("run loop log:\n%s", logs.String())
		})
	}
	tp.t.Cleanup(stop)
	return stop
}

func (tp *topo) mustHelper(mode string) string {
	tp.t.Helper()
	out, err := tp.helper(mode)
	if err != nil {
		tp.t.Fatal(err)
	}
	return out
}

// listen starts a TCP server in ns that tells each client the address it sees it from.
func listen(t *testing.T, ns, addr string) string {
	t.Helper()
	var ln net.Listener
	err := testenv.RunInNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s\n", host)
			// A little payload so a transfer crosses the link in full-size segments.
			c.Write(make([]byte, 64<<10))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// dial connects from ns to addr and returns the address the server saw us from.
func dial(ns, addr string) (string, error) {
	var seen string
	err := testenv.RunInNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		n, err := r.Discard(64 << 10)
		if err != nil {
			return fmt.Errorf("transfer: got %d bytes: %w", n, err)
		}
		seen = strings.TrimSpace(line)
		return nil
	})
	return seen, err
}

// capture starts tcpdump in ns on dev for packets to port and returns a function waiting for
// the first one's MSS option.
func capture(t *testing.T, ns, dev string, port int) func() (int, error) {
	t.Helper()
	testenv.RequireCommand(t, "tcpdump")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-nn", "-l", "-v", "-c", "1",
		fmt.Sprintf("tcp dst port %d", port))
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	// Wait until tcpdump listens, or the SYN could pass before it does.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening on") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	mssRE := regexp.MustCompile(`mss (\d+)`)
	return func() (int, error) {
		var all strings.Builder
		rd := bufio.NewScanner(stdout)
		for rd.Scan() {
			all.WriteString(rd.Text() + "\n")
			if m := mssRE.FindStringSubmatch(rd.Text()); m != nil {
				return strconv.Atoi(m[1])
			}
		}
		return 0, fmt.Errorf("no MSS option captured in %s: %q", ns, all.String())
	}
}

// snapshot is everything in the router namespace the agent may change.
func (tp *topo) snapshot() map[string]string {
	t := tp.t
	t.Helper()
	s := map[string]string{
		"ip4 rules": nsRun(t, tp.router, "ip", "-4", "rule", "show"),
		"ip6 rules": nsRun(t, tp.router, "ip", "-6", "rule", "show"),
		"sysctls":   nsRun(t, tp.router, "sh", "-c", "grep -r . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv6/conf/*/forwarding /proc/sys/net/ipv6/conf/*/accept_ra"),
		"nft":       nsRun(t, tp.router, "nft", "list", "ruleset"),
	}
	s["nft"] = normalizeNFT(s["nft"])
	if _, err := exec.LookPath("iptables-save"); err == nil {
		for _, prog := range []string{"iptables-save", "ip6tables-save"} {
			s[prog] = normalizeIPTablesSave(nsRun(t, tp.router, prog))
		}
	}
	return s
}

var builtinChains = map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true, "PREROUTING": true, "POSTROUTING": true}

// normalizeIPTablesSave keeps rules, user chains and non-default policies: iptables prints
// counters and timestamps, and creates a table's empty built-in chains the first time it is
// used (iptables-nft creates them in the kernel too) — those are nobody's rules.
func normalizeIPTablesSave(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0 || strings.HasPrefix(l, "#") || l == "COMMIT" || strings.HasPrefix(l, "*"):
		case strings.HasPrefix(l, ":") && len(f) >= 2:
			if name := f[0][1:]; !builtinChains[name] || f[1] != "ACCEPT" {
				keep = append(keep, f[0]+" "+f[1])
			}
		default:
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// normalizeNFT drops base chains that hold no rule and accept by default, and the tables
// left empty by that: iptables-nft creates them on first use of a table.
func normalizeNFT(out string) string {
	var res, table, chain []string
	chainHasRule := false
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "table "):
			table = []string{l}
		case strings.HasPrefix(t, "chain "):
			chain, chainHasRule = []string{l}, false
		case t == "}" && chain != nil:
			chain = append(chain, l)
			policyAccept := strings.Contains(strings.Join(chain, "\n"), "policy accept;")
			if chainHasRule || !policyAccept {
				table = append(table, chain...)
			}
			chain = nil
		case t == "}" && table != nil:
			if len(table) > 1 {
				res = append(res, table...)
				res = append(res, l)
			}
			table = nil
		case chain != nil:
			chain = append(chain, l)
			if !strings.HasPrefix(t, "type ") && t != "" {
				chainHasRule = true
			}
		case table != nil:
			table = append(table, l)
		default:
			res = append(res, l)
		}
	}
	return strings.Join(res, "\n")
}

func sameSnapshot(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %s differs:\n--- before\n%s\n--- after\n%s", what, k, v, b[k])
		}
	}
}

// reachable reports whether the peer reaches the LAN host, and which source the LAN host saw.
func reachable(ns, addr string) (string, bool) {
	seen, err := dial(ns, addr)
	return seen, err == nil
}

func sysctlIn(t *testing.T, ns, key string) string {
	return strings.TrimSpace(nsRun(t, ns, "sysctl", "-n", key))
}
