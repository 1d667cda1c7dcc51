package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/tailcfg"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestHeadscaleLiveMap: real headscale fetches our relay's live map (derp.urls, over HTTPS
// with a certificate from a test CA it trusts) and admits clients through its /verify; two
// real tailscaled nodes with direct paths off ping each other through our DERP region. The
// line's address changes: our DDNS moves the name, the live map follows, headscale serves
// the new address to the nodes, and they ping through the relay again.
func TestHeadscaleLiveMap(t *testing.T) {
	hsBin := testenv.BuildHeadscale(t) // in the host namespace: module download, build cache
	if _, err := testenv.BuildTailscaled(); err != nil {
		t.Fatal(err)
	}
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.CurrentNetNS()
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "up")
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "203.0.113.10/24", "dev", "wan0")
	testenv.IP(t, "route", "add", "default", "via", "203.0.113.1") // tailscaled pauses without one

	dns := testenv.StartBIND9(t, "example.test")
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := testenv.ServerCert(t, "derp.example.test", net.IPv4(127, 0, 0, 1))
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{caFile: caPEM, certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hsPort := testenv.FreePort(t, "tcp")
	derpPort, stunPort := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "udp")
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: %s
relay:
  hostname: derp.example.test
  listen: ":%d"
  stun_listen: ":%d"
  tls: {mode: manual, cert_file: %s, key_file: %s}
  verify_clients: {url: "http://127.0.0.1:%d/verify"}
ddns:
  provider: {type: rfc2136, server: %q, key_name: %q, key_alg: %q, key: %q}
  zone: example.test
  records: [{name: derp, type: A, interface: wan0}]
`, filepath.Join(dir, "state"), derpPort, stunPort, certFile, keyFile, hsPort, dns.Addr, dns.KeyName, dns.KeyAlg, dns.Key)), 0o600)
	if out, err := edgerelay(t, "check", "-c", cfgPath); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	startDaemon(t, nil, "-c", cfgPath)
	testenv.WaitFor(t, time.Minute, "DDNS to publish derp.example.test", func() bool {
		addrs, err := net.LookupHost("derp.example.test")
		return err == nil && len(addrs) == 1 && addrs[0] == "203.0.113.10"
	})

	out, err := edgerelay(t, "derpmap", "-c", cfgPath, "--format", "headscale")
	if err != nil {
		t.Fatalf("derpmap: %v\n%s", err, out)
	}
	liveURL := fmt.Sprintf("https://derp.example.test:%d/derpmap.json", derpPort)
	if want := "    - " + liveURL + "\n"; !strings.Contains(out, want) {
		t.Fatalf("derpmap --format headscale does not point at the live map %s:\n%s", liveURL, out)
	}
	hs := testenv.StartHeadscale(t, hsBin, testenv.HeadscaleOptions{
		Port: hsPort, DERPURLs: []string{liveURL}, UpdateFrequency: 2 * time.Second, Env: []string{"SSL_CERT_FILE=" + caFile},
	})
	authKey := hs.PreAuthKey(t, "alice")

	type node struct {
		ts   *testenv.Tailscaled
		self netip.Addr
	}
	nodes := make([]node, 2)
	for i := range nodes {
		tsDir, _ := testenv.TailscaledDir(t)
		ts := testenv.RunTailscaled(t, ns, tsDir, "TS_DEBUG_ALWAYS_USE_DERP=true", "SSL_CERT_FILE="+caFile)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		prefs := ipn.NewPrefs()
		prefs.ControlURL = hs.URL
		prefs.WantRunning = true
		prefs.Hostname = fmt.Sprintf("node%d", i)
		if err := ts.Start(ctx, ipn.Options{AuthKey: authKey, UpdatePrefs: prefs}); err != nil {
			t.Fatal(err)
		}
		if err := ts.StartLoginInteractive(ctx); err != nil { // logs in with the auth key
			t.Fatal(err)
		}
		cancel()
		nodes[i].ts = ts
	}
	for i := range nodes {
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("node%d running with its peer", i), func() bool {
			st, err := nodes[i].ts.Status(context.Background())
			if err != nil || st.BackendState != ipn.Running.String() || len(st.Peer) == 0 || len(st.TailscaleIPs) == 0 {
				return false
			}
			nodes[i].self = st.TailscaleIPs[0]
			return true
		})
	}
	derpIPv4 := func(n node) string {
		dm, err := n.ts.CurrentDERPMap(context.Background())
		if err != nil || dm == nil || dm.Regions[900] == nil || len(dm.Regions[900].Nodes) == 0 {
			return ""
		}
		return dm.Regions[900].Nodes[0].IPv4
	}
	// pingViaDERP has node a disco-ping b until a pong comes back through region 900.
	pingViaDERP := func(what string, a, b node) {
		t.Helper()
		d := testenv.WaitFor(t, 2*time.Minute, what, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := a.ts.Ping(ctx, b.self, tailcfg.PingDisco)
			if err != nil || res.Err != "" {
				return false
			}
			if res.DERPRegionID != 900 {
				t.Fatalf("pong not through our DERP region: %+v", res)
			}
			return true
		})
		t.Logf("%s: %v", what, d)
	}
	for _, n := range nodes {
		if got := derpIPv4(n); got != "203.0.113.10" {
			t.Fatalf("headscale's DERP map gives the node IPv4 %q, want 203.0.113.10", got)
		}
	}
	pingViaDERP("node0 pings node1 through the relay", nodes[0], nodes[1])
	pingViaDERP("node1 pings node0 through the relay", nodes[1], nodes[0])

	// The line's address changes (another subnet: a primary's removal takes its secondaries).
	testenv.IP(t, "addr", "add", "198.51.100.20/24", "dev", "wan0")
	testenv.IP(t, "addr", "del", "203.0.113.10/24", "dev", "wan0")
	testenv.IP(t, "route", "replace", "default", "via", "198.51.100.1")
	changed := time.Now()
	for i, n := range nodes {
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("headscale to give node%d the new address", i), func() bool { return derpIPv4(n) == "198.51.100.20" })
		t.Logf("node%d has the relay's new address %v after the change", i, time.Since(changed).Round(time.Millisecond))
	}
	pingViaDERP("node0 pings node1 through the relay at its new address", nodes[0], nodes[1])
	pingViaDERP("node1 pings node0 through the relay at its new address", nodes[1], nodes[0])
}
