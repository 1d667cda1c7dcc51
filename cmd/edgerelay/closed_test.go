package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/openwrt"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// TestShippedDefaultIsClosed runs the built binary on the UCI file the OpenWrt package
// installs, with only its ports and state_dir changed, on a non-loopback address in a
// network namespace. With no tailscaled, Tailscale's own DERP client is refused, and status
// and check say why and what to add; GET / names neither product nor version. A real
// tailscaled started later, at the socket path it has on a router, is found without a
// restart: its own connection and a node of its netmap are admitted, a stranger is not.
// Stopping it refuses everyone again.
func TestShippedDefaultIsClosed(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.CurrentNetNS()
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "addr", "add", "198.51.100.1/24", "dev", "wan0")
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "link", "set", "wan0p", "up")
	// tailscaled pauses without a default route; the gateway never answers.
	testenv.IP(t, "route", "add", "default", "via", "198.51.100.2", "dev", "wan0")

	dir := t.TempDir()
	derpPort, stunPort := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "udp")
	shipped := string(openwrt.DefaultConfig)
	cfgText := shipped
	for old, repl := range map[string]string{
		"option listen ':12345'":            fmt.Sprintf("option listen ':%d'", derpPort),
		"option stun_listen ':3478'":        fmt.Sprintf("option stun_listen ':%d'", stunPort),
		"option state_dir '/etc/edgerelay'": fmt.Sprintf("option state_dir '%s'", filepath.Join(dir, "state")),
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("the shipped config lacks %q", old)
		}
		cfgText = strings.Replace(cfgText, old, repl, 1)
	}
	cfgPath := filepath.Join(dir, "edgerelay")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := edgerelay(t, "check", "-c", cfgPath)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{"will refuse every client", "/var/run/tailscale/tailscaled.sock",
		"option verify_clients_url 'https://", "list verify_clients_allow 'nodekey:", "option verify_clients_open '1'   (in config relay)"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	// The daemon sees tsDir at /run/tailscale (/var/run/tailscale), where tailscaled keeps its
	// socket on a router; nothing else of the host's /run.
	tsDir, _ := testenv.TailscaledDir(t)
	d := startCmd(t, exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs tmpfs /run && mkdir /run/tailscale && mount --bind "$1" /run/tailscale && exec "$2" run -c "$3"`,
		"sh", tsDir, binPath, cfgPath))
	waitTCP(t, fmt.Sprintf("198.51.100.1:%d", derpPort))
	defer d.stop(t)

	region := derpMap(t, cfgPath).Regions[900]
	if region == nil || region.Nodes[0].HostName != "198.51.100.1" || !strings.HasPrefix(region.Nodes[0].CertName, "sha256-raw:") {
		t.Fatalf("derpmap region: %+v", region)
	}

	stranger, member := key.NewNode(), key.NewNode()
	if !derptest.Refused(t, region, stranger) || !derptest.Refused(t, region, member) {
		t.Fatal("a client was admitted with no client check and no tailscaled")
	}
	status := func() string {
		out, err := edgerelay(t, "status", "-c", cfgPath)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return out
	}
	if out := status(); !strings.Contains(out, "WARNING: refusing every client: no client check is configured and no tailscaled answers at /var/run/tailscale/tailscaled.sock") {
		t.Errorf("status does not say why clients are refused:\n%s", out)
	}

	node := region.Nodes[0]
	for _, path := range []string{"/", "/nope", "/derp", "/robots.txt"} {
		resp, err := derptest.HTTPClient(node).Get(derptest.URL(node) + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		all := strings.ToLower(fmt.Sprint(resp.Header) + string(body))
		if strings.Contains(all, "edgerelay") || strings.Contains(all, "e2e-test") {
			t.Errorf("GET %s names the product or version: %s %q", path, resp.Header, body)
		}
		if path == "/" && (resp.StatusCode != 200 || len(body) != 0) {
			t.Errorf("GET /: %d %q, want a blank page", resp.StatusCode, body)
		}
	}

	// A control server for tailscaled, with member as a node of the tailnet and our relay as
	// the only DERP region.
	ctlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	control := &testcontrol.Server{
		DERPMap:         &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{900: region}},
		ExplicitBaseURL: "http://" + ctlLn.Addr().String(),
		Logf:            t.Logf,
	}
	control.AddFakeNode() // makes the node table UpdateNode writes to
	control.UpdateNode(fakeNode(member.Public(), 7))
	ctlSrv := &http.Server{Handler: control}
	go ctlSrv.Serve(ctlLn)
	t.Cleanup(func() { ctlSrv.Close() })

	ts := testenv.RunTailscaled(t, ns, tsDir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prefs := ipn.NewPrefs()
	prefs.ControlURL = control.ExplicitBaseURL
	prefs.WantRunning = true
	prefs.Hostname = "router"
	if err := ts.Start(ctx, ipn.Options{AuthKey: "tskey-test", UpdatePrefs: prefs}); err != nil {
		t.Fatal(err)
	}
	if err := ts.StartLoginInteractive(ctx); err != nil {
		t.Fatal(err)
	}
	var statusJSON struct {
		Relay struct {
			Clients      int64
			Admits       string
			Verification struct{ Tailscaled struct{ Admitted int64 } }
		}
		Warnings []string
	}
	readStatus := func() {
		out, err := edgerelay(t, "status", "-c", cfgPath, "--json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		statusJSON.Warnings = nil
		if err := json.Unmarshal([]byte(out), &statusJSON); err != nil {
			t.Fatal(err)
		}
	}
	took := testenv.WaitFor(t, 90*time.Second, "tailscaled's own DERP connection to be admitted", func() bool {
		readStatus()
		return statusJSON.Relay.Clients >= 1 && statusJSON.Relay.Verification.Tailscaled.Admitted >= 1
	})
	t.Logf("tailscaled found and its connection admitted %v after it started; status: admits %s", took, statusJSON.Relay.Admits)
	if !strings.Contains(statusJSON.Relay.Admits, "found at /var/run/tailscale/tailscaled.sock") || len(statusJSON.Warnings) != 0 {
		t.Errorf("status with tailscaled up: admits %q, warnings %q", statusJSON.Relay.Admits, statusJSON.Warnings)
	}
	p := derptest.Connect(t, region, member) // in tailscaled's netmap
	if !derptest.Refused(t, region, stranger) {
		t.Fatal("a stranger was admitted while tailscaled runs")
	}
	p.Client.Close()

	ts.Stop()
	if !derptest.Refused(t, region, member) {
		t.Fatal("a node was admitted after tailscaled stopped")
	}
	testenv.WaitFor(t, 30*time.Second, "status to say every client is refused again", func() bool {
		readStatus()
		return len(statusJSON.Warnings) == 1 && strings.Contains(statusJSON.Warnings[0], "refusing every client")
	})
}

// fakeNode is a tailnet node with key k, as a control server lists it.
func fakeNode(k key.NodePublic, id int64) *tailcfg.Node {
	addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(id)}), 32)
	return &tailcfg.Node{
		ID: tailcfg.NodeID(id), StableID: tailcfg.StableNodeID(fmt.Sprintf("TESTNODE%d", id)), User: tailcfg.UserID(id),
		Name: fmt.Sprintf("node%d.test.ts.net.", id), Key: k, Machine: key.NewMachine().Public(), MachineAuthorized: true,
		DiscoKey: key.NewDisco().Public(), Addresses: []netip.Prefix{addr}, AllowedIPs: []netip.Prefix{addr},
	}
}
