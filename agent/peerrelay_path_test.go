package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

// TestPeerRelayCarriesTraffic is the peer relay end to end: two real tailscaled clients in
// namespaces that cannot reach each other (the box between them does not forward) but both
// reach the box, Tailscale's own test control server granting tailscale.com/cap/relay to
// everyone, and the agent making the box's real tailscaled the peer relay. `tailscale ping`
// from one client to the other, via DERP before, then answers via the peer relay on the
// configured port; the box's tailscaled reports the session with traffic both ways, and so
// does `status`; the grant to paste names the box. The relay port is also dropped at the
// end of INPUT, so the path works only through the agent's opening.
func TestPeerRelayCarriesTraffic(t *testing.T) {
	cli := buildTailscale(t)
	if !testenv.InNetNS(t) {
		return
	}
	ipt := testenv.RequireCommand(t, "iptables")
	ip := testenv.RequireCommand(t, "ip")
	box := testenv.CurrentNetNS()

	// box: 10.0.1.1 towards a (10.0.1.2), 10.0.2.1 towards b (10.0.2.2); ip_forward stays 0,
	// so a and b reach both of the box's addresses (local delivery) but never each other.
	clients := map[string]int{"a": 1, "b": 2}
	ns := map[string]string{}
	for name, n := range clients {
		ns[name] = testenv.NewNetNS(t, ip)
		dev := "veth" + name
		testenv.IP(t, "link", "add", dev, "type", "veth", "peer", "name", dev+"p")
		testenv.IP(t, "link", "set", dev+"p", "netns", ns[name])
		testenv.IP(t, "link", "set", dev, "up")
		testenv.IP(t, "addr", "add", fmt.Sprintf("10.0.%d.1/24", n), "dev", dev)
		testenv.IP(t, "-n", ns[name], "addr", "add", fmt.Sprintf("10.0.%d.2/24", n), "dev", dev+"p")
		testenv.IP(t, "-n", ns[name], "link", "set", dev+"p", "up")
		testenv.IP(t, "-n", ns[name], "route", "add", "default", "via", fmt.Sprintf("10.0.%d.1", n))
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != "0" {
		t.Fatalf("the box forwards (ip_forward=%s): a and b could talk directly", b)
	}

	// Tailscale's test control server and DERP server, on the box, reachable from both.
	control := &testcontrol.Server{
		DERPMap:         integration.RunDERPAndSTUN(t, logger.Discard, "10.0.1.1"),
		PeerRelayGrants: true,
		AllOnline:       true,
		Logf:            logger.Discard,
	}
	ln, err := net.Listen("tcp", "10.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: control}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	loginServer := "http://" + ln.Addr().String()

	env := []string{"TS_DISABLE_PORTMAPPER=1", "TS_ASSUME_NETWORK_UP_FOR_TEST=1"}
	type node struct {
		ts   *testenv.Tailscaled
		sock string
	}
	nodes := map[string]node{}
	for _, name := range []string{"box", "a", "b"} {
		where := box
		if name != "box" {
			where = ns[name]
		}
		dir, sock := testenv.TailscaledDir(t)
		nodes[name] = node{testenv.RunTailscaled(t, where, dir, env...), sock}
	}
	tailscale := func(name string, args ...string) (string, error) {
		out, err := exec.Command(cli, append([]string{"--socket=" + nodes[name].sock}, args...)...).CombinedOutput()
		return string(out), err
	}
	for name := range nodes {
		if out, err := tailscale(name, "up", "--login-server="+loginServer, "--hostname="+name, "--timeout=60s"); err != nil {
			t.Fatalf("tailscale up on %s: %v\n%s", name, err, out)
		}
	}
	ip4 := map[string]string{}
	for name, n := range nodes {
		testenv.WaitFor(t, time.Minute, name+" to be running with an address", func() bool {
			st, err := n.ts.StatusWithoutPeers(t.Context())
			if err != nil || st.BackendState != "Running" || len(st.TailscaleIPs) == 0 {
				return false
			}
			ip4[name] = st.TailscaleIPs[0].String()
			return true
		})
	}

	// Before the agent runs, a reaches b only through DERP: no direct path, no relay.
	var viaDERP string
	testenv.WaitFor(t, 2*time.Minute, "a's ping to b to go through DERP", func() bool {
		viaDERP, _ = tailscale("a", "ping", "--until-direct=false", "--c=1", "--timeout=2s", ip4["b"])
		return strings.Contains(viaDERP, "via DERP(")
	})
	t.Logf("tailscale ping before: %s", strings.TrimSpace(viaDERP))

	// The agent makes the box's tailscaled the peer relay.
	port := testenv.FreePort(t, "udp")
	stateDir := t.TempDir()
	path := stateDir + "/config.yaml"
	os.WriteFile(path, fmt.Appendf(nil, "state_dir: %s\nrelay: {enabled: false}\npeer_relay:\n  port: %d\n  static_endpoints: [10.0.1.1, 10.0.2.1]\n  tailscaled_socket: %s\n  firewall: iptables\n",
		stateDir, port, nodes["box"].sock), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, make(chan struct{}))
	testenv.WaitFor(t, time.Minute, "the agent to make tailscaled a peer relay", func() bool {
		st := a.Status(t.Context()).PeerRelay
		return st != nil && st.InPrefs && st.PortOpen
	})
	if out, err := exec.Command(ipt, "-A", "INPUT", "-p", "udp", "--dport", strconv.Itoa(port), "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// a pings b: the answer comes via the peer relay at one of the box's endpoints.
	var via string
	testenv.WaitFor(t, 2*time.Minute, "a's ping to b to go through the peer relay", func() bool {
		out, _ := tailscale("a", "ping", "--until-direct=false", "--c=1", "--timeout=2s", ip4["b"])
		st, err := nodes["a"].ts.Status(t.Context())
		if err != nil {
			return false
		}
		for _, p := range st.Peer {
			if p.HostName == "b" && p.PeerRelay != "" && strings.Contains(out, "via peer-relay(") {
				via = strings.TrimSpace(out)
				return strings.HasPrefix(p.PeerRelay, "10.0.1.1:"+strconv.Itoa(port)+":") ||
					strings.HasPrefix(p.PeerRelay, "10.0.2.1:"+strconv.Itoa(port)+":")
			}
		}
		return false
	})
	t.Logf("tailscale ping: %s", via)
	out, _ := tailscale("a", "status")
	t.Logf("tailscale status on a:\n%s", out)
	st, err := nodes["a"].ts.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peer {
		if p.HostName == "b" && p.CurAddr != "" {
			t.Fatalf("a has a direct path to b (%s): the topology leaks", p.CurAddr)
		}
	}

	// The box's tailscaled holds the session, with traffic both ways; status reports it.
	sessions, err := nodes["box"].ts.DebugPeerRelaySessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(sessions)
	t.Logf("the box's relay sessions: %s", js)
	if sessions.UDPPort == nil || int(*sessions.UDPPort) != port || len(sessions.Sessions) != 1 ||
		sessions.Sessions[0].Client1.PacketsTx == 0 || sessions.Sessions[0].Client2.PacketsTx == 0 {
		t.Fatalf("relay sessions: %s", js)
	}
	testenv.WaitFor(t, time.Minute, "status to count the session", func() bool {
		return a.Status(t.Context()).PeerRelay.Sessions == 1
	})

	// The grant to paste names the box's Tailscale address.
	r, err := peerrelay.New(cfg.PeerRelay.Config, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var grant strings.Builder
	if err := r.WriteGrant(t.Context(), &grant, "tailscale"); err != nil || !strings.Contains(grant.String(), `"dst": ["`+ip4["box"]+`"]`) {
		t.Fatalf("grant (%v):\n%s", err, grant.String())
	}
}
