package agent

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
)

// buildTailscale builds the tailscale CLI and tailscaled (in the host namespace: module and
// build caches; a run inside a namespace reuses them) and returns the CLI's path.
func buildTailscale(t *testing.T) string {
	t.Helper()
	cli, err := testenv.BuildTool("tailscale.com/cmd/tailscale")
	if err == nil {
		_, err = testenv.BuildTailscaled()
	}
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// TestPeerRelayTailscaled drives a real tailscaled and the real tailscale CLI: the agent
// makes tailscaled a peer relay (it then listens on the port), the static endpoints follow
// the WAN address, prefs cleared by `tailscale set` come back, a restarted tailscaled is
// followed again, a real UDP packet from another namespace passes the opened port, and
// turning the section off restores tailscaled's prefs and closes the port.
func TestPeerRelayTailscaled(t *testing.T) {
	cli := buildTailscale(t)
	if !testenv.InNetNS(t) {
		return
	}
	ipt := testenv.RequireCommand(t, "iptables")
	ns := testenv.CurrentNetNS()
	peer := testenv.NewNetNS(t, testenv.RequireCommand(t, "ip"))
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "netns", peer)
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "203.0.113.10/24", "dev", "wan0")
	testenv.IP(t, "-n", peer, "addr", "add", "203.0.113.20/24", "dev", "wan0p")
	testenv.IP(t, "-n", peer, "link", "set", "wan0p", "up")

	dir, sock := testenv.TailscaledDir(t)
	ts := testenv.RunTailscaled(t, ns, dir)
	port := testenv.FreePort(t, "udp")
	stateDir := t.TempDir()
	path := stateDir + "/config.yaml"
	base := fmt.Sprintf("state_dir: %s\nrelay: {enabled: false}\n", stateDir)
	section := fmt.Sprintf("peer_relay:\n  port: %d\n  static_endpoints: [auto, 192.0.2.7]\n  tailscaled_socket: %s\n  firewall: iptables\n", port, sock)
	os.WriteFile(path, []byte(base+section), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	a := startAgent(t, cfg, reload)

	prefs := func() string {
		p, err := ts.GetPrefs(t.Context())
		if err != nil {
			return "error: " + err.Error()
		}
		eps := make([]string, 0, len(p.RelayServerStaticEndpoints))
		for _, ap := range p.RelayServerStaticEndpoints {
			eps = append(eps, ap.String())
		}
		slices.Sort(eps)
		pp := "off"
		if p.RelayServerPort != nil {
			pp = strconv.Itoa(int(*p.RelayServerPort))
		}
		return pp + " " + strings.Join(eps, ",")
	}
	want := func(addrs ...string) func() bool {
		var eps []string
		for _, a := range addrs {
			eps = append(eps, netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port)).String())
		}
		slices.Sort(eps)
		w := strconv.Itoa(port) + " " + strings.Join(eps, ",")
		return func() bool { return prefs() == w }
	}
	testenv.WaitFor(t, time.Minute, "the peer relay prefs", want("203.0.113.10", "192.0.2.7"))
	listening := func() bool {
		out, _ := exec.Command("ss", "-Hluna", "sport", "=", ":"+strconv.Itoa(port)).CombinedOutput()
		return strings.Contains(string(out), ":"+strconv.Itoa(port))
	}
	testenv.WaitFor(t, time.Minute, "tailscaled to listen on the relay port", listening)

	// A real packet from the other namespace passes the rule with INPUT dropping the rest.
	if out, err := exec.Command(ipt, "-P", "INPUT", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	accepted := func() int {
		out, _ := exec.Command(ipt, "-L", "edgerelay-peer-relay", "-v", "-x", "-n").CombinedOutput()
		m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+ACCEPT\s.*udp dpt:` + strconv.Itoa(port)).FindStringSubmatch(string(out))
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	testenv.WaitFor(t, time.Minute, "the port's iptables chain", func() bool { return accepted() == 0 })
	testenv.WaitFor(t, time.Minute, "a UDP packet from the other namespace to be accepted", func() bool {
		err := testenv.RunInNetNS(peer, func() error {
			c, err := net.Dial("udp", net.JoinHostPort("203.0.113.10", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("edgerelay test packet"))
			return err
		})
		return err == nil && accepted() > 0
	})

	// Another tool clears the prefs: they come back without the test polling the agent.
	tailscale := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(cli, append([]string{"--socket=" + sock}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tailscale %v: %v\n%s", args, err, out)
		}
	}
	tailscale("set", "--relay-server-port=", "--relay-server-static-endpoints=")
	d := testenv.WaitFor(t, time.Minute, "the prefs to be put back", want("203.0.113.10", "192.0.2.7"))
	t.Logf("put back %v after `tailscale set` cleared them", d)

	// The WAN address changes: the endpoints follow.
	testenv.IP(t, "addr", "add", "198.51.100.20/24", "dev", "wan0")
	testenv.IP(t, "addr", "del", "203.0.113.10/24", "dev", "wan0")
	testenv.WaitFor(t, time.Minute, "the endpoints to follow the address", want("198.51.100.20", "192.0.2.7"))

	// tailscaled restarts; the agent follows the new one and still puts cleared prefs back.
	ts.Stop()
	testenv.WaitFor(t, time.Minute, "status to report tailscaled gone", func() bool {
		st := a.Status(t.Context())
		return st.PeerRelay != nil && !st.PeerRelay.InPrefs && st.PeerRelay.Error != ""
	})
	ts = testenv.RunTailscaled(t, ns, dir)
	testenv.WaitFor(t, time.Minute, "status after the restart", func() bool {
		st := a.Status(t.Context())
		return st.PeerRelay != nil && st.PeerRelay.InPrefs && st.PeerRelay.Error == "" && st.PeerRelay.Sessions == 0
	})
	tailscale("set", "--relay-server-port=1234")
	testenv.WaitFor(t, time.Minute, "the prefs to be put back after the restart", want("198.51.100.20", "192.0.2.7"))
	st := a.Status(t.Context()).PeerRelay
	if st.Reasserted < 2 || st.Tailscaled == "" || st.Firewall != "iptables" || !st.PortOpen {
		t.Fatalf("status: %+v", st)
	}

	// Turned off: the prefs go back to what they were (no peer relay) and the port closes.
	os.WriteFile(path, []byte(base), 0o600)
	reload <- struct{}{}
	testenv.WaitFor(t, time.Minute, "the prefs to be restored", func() bool { return prefs() == "off " })
	testenv.WaitFor(t, time.Minute, "the firewall chain to go", func() bool { return accepted() == -1 })
	if _, err := os.Stat(stateDir + "/peer-relay.json"); !os.IsNotExist(err) {
		t.Errorf("state file left after undo: %v", err)
	}
}
