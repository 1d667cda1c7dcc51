package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// meshNode is one edgerelay process of a two-node region.
type meshNode struct {
	dir, cfg, addr string
	port           int
	pin            string
}

// TestMeshTwoProcesses: two edgerelay processes meshed on loopback; a Tailscale client on
// node A reaches one on node B; B is killed and restarted, and traffic resumes.
func TestMeshTwoProcesses(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "mesh.key")
	os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600)
	nodes := make([]*meshNode, 2)
	for i := range nodes {
		n := &meshNode{dir: t.TempDir(), port: testenv.FreePort(t, "tcp")}
		n.addr = fmt.Sprintf("127.0.0.1:%d", n.port)
		n.cfg = filepath.Join(n.dir, "config.yaml")
		nodes[i] = n
	}
	write := func(n, peer *meshNode) {
		pins := ""
		if peer.pin != "" {
			pins = fmt.Sprintf("    pins: [%q]\n", peer.pin)
		}
		os.WriteFile(n.cfg, []byte(fmt.Sprintf(`state_dir: %s
relay:
  hostname: 127.0.0.1
  listen: %q
  stun_listen: ""
  tls: {mode: self-signed}
  mesh:
    key_file: %s
    peers: [%q]
%s`, n.dir, n.addr, keyFile, peer.addr, pins)), 0o600)
	}
	// Each node's pin comes from its own derpmap output, as a user would copy it.
	for i, n := range nodes {
		write(n, nodes[1-i])
		out, err := edgerelay(t, "derpmap", "-c", n.cfg, "--format", "json")
		if err != nil {
			t.Fatalf("derpmap: %v\n%s", err, out)
		}
		var dm tailcfg.DERPMap
		if err := json.Unmarshal([]byte(out), &dm); err != nil {
			t.Fatal(err)
		}
		n.pin = dm.Regions[900].Nodes[0].CertName
		if len(dm.Regions[900].Nodes) != 2 {
			t.Fatalf("derpmap lists %d nodes, want the region's 2", len(dm.Regions[900].Nodes))
		}
	}
	for i, n := range nodes {
		write(n, nodes[1-i])
		if out, err := edgerelay(t, "check", "-c", n.cfg); err != nil {
			t.Fatalf("check: %v\n%s", err, out)
		}
	}
	region := func(n *meshNode) *tailcfg.DERPRegion {
		return &tailcfg.DERPRegion{RegionID: 900, Nodes: []*tailcfg.DERPNode{{
			Name: "900a", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", DERPPort: n.port, CertName: n.pin, STUNPort: -1}}}
	}
	startDaemon(t, nil, "-c", nodes[0].cfg)
	b := startDaemon(t, nil, "-c", nodes[1].cfg)
	waitTCP(t, nodes[0].addr)
	waitTCP(t, nodes[1].addr)

	ca := derptest.Connect(t, region(nodes[0]), key.NewNode())
	bKey := key.NewNode()
	cb := derptest.Connect(t, region(nodes[1]), bKey)
	// Each mesh link learns of the other node's clients within moments (and a link may still
	// be dialling): send until the packet arrives.
	deliver := func(from, to *derptest.Peer, payload string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			from.Send(to.Pub(), []byte(payload))
			select {
			case m := <-to.Msgs:
				if rp, ok := m.(derp.ReceivedPacket); ok && string(rp.Data) == payload && rp.Source == from.Pub() {
					return
				}
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q never crossed the mesh", payload)
			}
		}
	}
	deliver(ca, cb, "A to B across the mesh")
	deliver(cb, ca, "B to A across the mesh")

	// Kill B and start it again: same key, same port.
	b.cmd.Process.Kill()
	<-b.exited
	b.exited <- nil
	startDaemon(t, nil, "-c", nodes[1].cfg)
	waitTCP(t, nodes[1].addr)
	cb2 := derptest.Connect(t, region(nodes[1]), bKey)
	deliver(ca, cb2, "after B restarted")
	deliver(cb2, ca, "and back")
}
