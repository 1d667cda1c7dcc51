package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/derp/derphttp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, limit, what, cond)
}

// startAgent runs an agent on cfg until the test ends; reload may be nil.
func startAgent(t *testing.T, cfg *config.Config, reload chan struct{}) *Agent {
	t.Helper()
	a := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, reload) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

// TestACMECertificateSwap: the agent obtains a certificate from Pebble by DNS-01 against
// BIND9, the relay serves it to Tailscale clients, and a renewal swaps it in while those
// clients stay connected; new clients see the new certificate.
func TestACMECertificateSwap(t *testing.T) {
	pebbleBin := testenv.BuildPebble(t) // in the host namespace: module download, build cache
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{Binary: pebbleBin})
	root, err := peb.Root()
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`state_dir: %s
relay:
  hostname: derp.example.test
  listen: 127.0.0.1:0
  stun_listen: ""
  tls: {mode: acme}
acme:
  email: admin@example.test
  directory: %s
  ca_cert_file: %s
  resolvers: [%q]
  propagation_timeout: 30s
  dns_provider: {type: rfc2136, server: %q, key_name: %q, key_alg: %q, key: %q}
`, t.TempDir(), peb.DirectoryURL, peb.CACertFile, ns.Addr, ns.Addr, ns.KeyName, ns.KeyAlg, ns.Key)
	cfg, err := config.Parse([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, nil)
	waitFor(t, "the first certificate", 2*time.Minute, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.acme != nil && !a.acme.Expiry().IsZero() && a.relay != nil && a.relay.Addr() != nil
	})
	a.mu.Lock()
	m, r := a.acme, a.relay
	a.mu.Unlock()

	region := &tailcfg.DERPRegion{RegionID: 900, RegionCode: "home", Nodes: []*tailcfg.DERPNode{{
		Name: "900a", RegionID: 900, HostName: "derp.example.test", IPv4: "127.0.0.1", DERPPort: r.Addr().Port,
	}}}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	trustPebble := func(c *derphttp.Client) { c.TLSConfig = &tls.Config{RootCAs: pool} }
	serial := func(p *derptest.Peer) string {
		st, ok := p.Client.TLSConnectionState()
		if !ok {
			t.Fatal("no TLS state")
		}
		return st.PeerCertificates[0].SerialNumber.String()
	}
	a1 := derptest.Connect(t, region, key.NewNode(), trustPebble)
	b1 := derptest.Connect(t, region, key.NewNode(), trustPebble)
	a1.Send(b1.Pub(), []byte("before renewal"))
	b1.ExpectPacket(a1.Pub(), []byte("before renewal"))
	first := serial(a1)

	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	if err := m.Renew(rctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// The old connections still relay: no restart, no drop (a dropped connection closes Msgs).
	b1.Send(a1.Pub(), []byte("after renewal"))
	a1.ExpectPacket(b1.Pub(), []byte("after renewal"))
	c := derptest.Connect(t, region, key.NewNode(), trustPebble)
	if got := serial(c); got == first {
		t.Fatalf("a new client still gets the old certificate %s", got)
	}
	c.Send(a1.Pub(), []byte("new cert"))
	a1.ExpectPacket(c.Pub(), []byte("new cert"))
	if st := a.Status(t.Context()); st.ACME == nil || st.Relay == nil || st.Relay.CertNotAfter.IsZero() {
		t.Fatalf("status lacks the certificate: %+v", st)
	}
}

// TestAddressesFollowDDNS: the agent passes ddns's address changes on, so status and the
// DERP map show the line's current address, and follow it when it changes.
func TestAddressesFollowDDNS(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "up")
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "2001:db8:1::10/64", "dev", "wan0", "nodad")
	stateDir := t.TempDir()
	yaml := fmt.Sprintf(`state_dir: %s
relay:
  hostname: derp.example.test
  listen: 127.0.0.1:0
  stun_listen: ""
ddns:
  provider: {type: rfc2136, server: %q, key_name: %q, key_alg: %q, key: %q}
  zone: example.test
  records: [{name: derp, type: AAAA, interface: wan0}]
`, stateDir, ns.Addr, ns.KeyName, ns.KeyAlg, ns.Key)
	cfg, err := config.Parse([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, nil)
	waitFor(t, "the first address", time.Minute, func() bool { return a.Addrs().IPv6.String() == "2001:db8:1::10" })
	testenv.IP(t, "addr", "add", "2001:db8:2::20/64", "dev", "wan0", "nodad")
	testenv.IP(t, "addr", "del", "2001:db8:1::10/64", "dev", "wan0")
	waitFor(t, "the new address", time.Minute, func() bool { return a.Addrs().IPv6.String() == "2001:db8:2::20" })

	// What `edgerelay status` and `edgerelay derpmap` read: the daemon's socket.
	var st *Status
	waitFor(t, "status to show the record published", time.Minute, func() bool {
		st, err = QueryStatus(t.Context(), stateDir)
		return err == nil && len(st.DDNS) == 1 && st.DDNS[0].Published.String() == "2001:db8:2::20"
	})
	if st.Addrs.IPv6.String() != "2001:db8:2::20" {
		t.Fatalf("status addresses %+v", st.Addrs)
	}
	// The map to paste names the DDNS-kept host only (clients follow DNS); the live map
	// carries the current address.
	if st.DERPMap == nil || len(st.DERPMap.Region.Nodes) != 1 || st.MapStale {
		t.Fatalf("status map %+v, stale %v", st.DERPMap, st.MapStale)
	}
	if n := st.DERPMap.Region.Nodes[0]; n.HostName != "derp.example.test" || n.IPv4 != "" || n.IPv6 != "" ||
		len(st.DERPMap.Notes) == 0 || !strings.Contains(st.DERPMap.Notes[0], "DDNS keeps current") {
		t.Fatalf("pasted node %+v, notes %q", n, st.DERPMap.Notes)
	}
	waitFor(t, "the live map to carry the new address", time.Minute, func() bool {
		rec := httptest.NewRecorder()
		a.Relay().Handler().ServeHTTP(rec, httptest.NewRequest("GET", relay.LiveMapPath, nil))
		return strings.Contains(rec.Body.String(), `"IPv6": "2001:db8:2::20"`)
	})
}

// TestSubnetTurnedOffIsUndone: a reload that removes the subnet section undoes the rules
// and sysctls the subnet part had set up (in a namespace of the test's own).
func TestSubnetTurnedOffIsUndone(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	if out, err := exec.Command("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	path := dir + "/config.yaml"
	base := fmt.Sprintf("state_dir: %s\nrelay: {enabled: false}\n", dir)
	os.WriteFile(path, []byte(base+"subnet: {lan_interfaces: [lan0], firewall: none, advertise: false}\n"), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	startAgent(t, cfg, reload)
	rules := func() string {
		out, _ := exec.Command("ip", "rule", "show", "pref", "1250").CombinedOutput()
		return string(out)
	}
	forward := func() string {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return strings.TrimSpace(string(b))
	}
	waitFor(t, "the subnet rules", time.Minute, func() bool { return strings.Contains(rules(), "100.64.0.0/10") && forward() == "1" })
	os.WriteFile(path, []byte(base), 0o600)
	reload <- struct{}{}
	waitFor(t, "the rules and forwarding to be undone", time.Minute, func() bool { return rules() == "" && forward() == "0" })
}

// TestIPOnlyMapGoesStale: an IP-only relay (no hostname) publishes this box's public address;
// when the line's address changes, the live map follows at once, status says the map handed
// out for pasting is stale and carries the new one, and handing the new one out clears it.
// A typed address that leaves the box is reported too.
func TestIPOnlyMapGoesStale(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "up")
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "203.0.113.10/24", "dev", "wan0")
	stateDir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nrelay: {listen: \"127.0.0.1:0\", stun_listen: \"\", verify_clients: {open: true}}\n", stateDir)), false)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, cfg, nil)
	host := func() string {
		m, ok := a.DERPMap()
		if !ok {
			return ""
		}
		return m.Region.Nodes[0].HostName
	}
	liveHas := func(want string) func() bool {
		return func() bool {
			r := a.Relay()
			if r == nil {
				return false
			}
			rec := httptest.NewRecorder()
			r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", relay.LiveMapPath, nil))
			return strings.Contains(rec.Body.String(), `"HostName": "`+want+`"`)
		}
	}
	waitFor(t, "the first map", time.Minute, func() bool { return host() == "203.0.113.10" })
	if st := a.Status(t.Context()); st.MapStale || len(st.Warnings) != 0 {
		t.Fatalf("fresh map reported stale: %q", st.Warnings)
	}
	testenv.IP(t, "addr", "add", "198.51.100.20/24", "dev", "wan0") // another subnet: deleting a primary deletes its secondaries
	testenv.IP(t, "addr", "del", "203.0.113.10/24", "dev", "wan0")
	d := testenv.WaitFor(t, time.Minute, "the live map to follow", liveHas("198.51.100.20"))
	t.Logf("live map followed the address change in %v", d)
	st := a.Status(t.Context())
	if !st.MapStale || st.DERPMap.Region.Nodes[0].HostName != "198.51.100.20" || len(st.Warnings) != 1 ||
		!strings.Contains(st.Warnings[0], "203.0.113.10") || !strings.Contains(st.Warnings[0], "198.51.100.20") {
		t.Fatalf("stale: %v, warnings %q, map %+v", st.MapStale, st.Warnings, st.DERPMap)
	}
	t.Logf("status: %s", st.Warnings[0])
	if m, ok := a.HandOut(); !ok || m.Region.Nodes[0].HostName != "198.51.100.20" {
		t.Fatalf("hand out: %+v", m)
	}
	if st := a.Status(t.Context()); st.MapStale {
		t.Fatalf("still stale after the new map was handed out: %q", st.Warnings)
	}

	// A typed address: once it leaves the box, status says so and shows the box's address.
	typed, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nrelay: {hostname: 198.51.100.20, listen: \"127.0.0.1:0\", stun_listen: \"\", verify_clients: {open: true}}\n", t.TempDir())), false)
	if err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, typed, nil)
	waitFor(t, "the typed map", time.Minute, func() bool {
		m, ok := b.DERPMap()
		return ok && m.Region.Nodes[0].HostName == "198.51.100.20"
	})
	testenv.IP(t, "addr", "add", "192.0.2.30/24", "dev", "wan0")
	testenv.IP(t, "addr", "del", "198.51.100.20/24", "dev", "wan0")
	waitFor(t, "status to report the typed address gone", time.Minute, func() bool {
		st := b.Status(t.Context())
		return st.MapStale && len(st.Warnings) == 1 && strings.Contains(st.Warnings[0], "relay.hostname 198.51.100.20 is no longer an address of this box") &&
			st.DERPMap.Region.Nodes[0].HostName == "192.0.2.30"
	})
}

// TestStatusAnswersWhileApplyWaits: status serves what the parts last published. While the
// subnet part's apply holds the Reconciler, stuck on a tailscaled that accepted the
// connection and does not answer, status still answers at once (before that connection
// ends); once the apply gives up, status shows its error.
func TestStatusAnswersWhileApplyWaits(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	testenv.IP(t, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
	dir := t.TempDir()
	sock := filepath.Join(dir, "tailscaled.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted, closed := make(chan struct{}), make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		close(accepted)
		io.Copy(io.Discard, c) // read the request, never answer, until the client gives up
		ln.Close()             // from now on tailscaled is plainly not there
		close(closed)
		c.Close()
	}()
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nrelay: {enabled: false}\n"+
		"subnet: {lan_interfaces: [lan0], firewall: none, tailscaled_socket: %s}\n", dir, sock)), false)
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, cfg, nil)
	<-accepted // the apply now holds the Reconciler, waiting on tailscaled
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var st *Status
	testenv.WaitFor(t, time.Minute, "the status socket", func() bool {
		st, err = QueryStatus(ctx, dir)
		return err == nil
	})
	select {
	case <-closed:
		t.Fatal("status answered only after the apply gave up on tailscaled")
	default:
	}
	if st.Parts["subnet"] != "running" || st.Subnet == nil || !st.Subnet.Checked.IsZero() {
		t.Fatalf("status during the first apply: parts %v, subnet %+v", st.Parts, st.Subnet)
	}
	<-closed
	waitFor(t, "the apply's error in status", time.Minute, func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.Subnet != nil && strings.Contains(st.Subnet.Error, "tailscaled LocalAPI")
	})
}
