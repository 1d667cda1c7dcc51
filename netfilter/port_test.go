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
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// fakeFW4Input is `fw4 reload` reduced to an input chain that drops what no rule accepts
// (OpenWrt's wan zone), pulling in the chain-pre include files.
const fakeFW4Input = `#!/bin/sh
set -e
nft -f - <<EOF
table inet fw4
flush table inet fw4
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		include "%[1]s/chain-pre/input/*.nft"
	}
}
EOF
`

// udpPath is a WAN: this namespace at 203.0.113.10 on wan0, and a peer namespace at
// 203.0.113.20 that sends to port.
type udpPath struct {
	t    *testing.T
	peer string
	conn net.PacketConn
	port int
}

func newUDPPath(t *testing.T) *udpPath {
	peer := testenv.NewNetNS(t, testenv.RequireCommand(t, "ip"))
	testenv.IP(t, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	testenv.IP(t, "link", "set", "wan0p", "netns", peer)
	testenv.IP(t, "link", "set", "wan0", "up")
	testenv.IP(t, "addr", "add", "203.0.113.10/24", "dev", "wan0")
	testenv.IP(t, "-n", peer, "addr", "add", "203.0.113.20/24", "dev", "wan0p")
	testenv.IP(t, "-n", peer, "link", "set", "wan0p", "up")
	c, err := net.ListenPacket("udp", "203.0.113.10:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPath{t: t, peer: peer, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port}
}

// arrives sends one datagram from the peer and reports whether it arrived within wait.
func (u *udpPath) arrives(wait time.Duration) bool {
	msg := "probe " + strconv.FormatInt(time.Now().UnixNano(), 10)
	err := testenv.RunInNetNS(u.peer, func() error {
		c, err := net.Dial("udp", net.JoinHostPort("203.0.113.10", strconv.Itoa(u.port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
	if err != nil {
		u.t.Fatal(err)
	}
	buf := make([]byte, 64)
	u.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := u.conn.ReadFrom(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}

// TestPortRuleFW4: under an fw4 input chain that drops, the include makes a real datagram
// from the WAN reach the port, and it survives an fw4 reload; Close takes it out again.
func TestPortRuleFW4(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	testenv.RequireCommand(t, "nft")
	u := newUDPPath(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "fw4")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(fakeFW4Input, dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script, "reload").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if u.arrives(2 * time.Second) {
		t.Fatal("a datagram passed fw4's input drop before the port was opened")
	}
	p := NewPortRule("peer-relay", u.port, nil, WithFW4(dir, script, "reload"))
	if b, err := p.Resolve(t.Context(), "fw4"); err != nil || b != BackendFW4 {
		t.Fatalf("resolve: %q %v", b, err)
	}
	if err := p.Open(t.Context(), BackendFW4); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "a datagram through fw4's input chain", func() bool { return u.arrives(time.Second) })
	if out, err := exec.Command(script, "reload").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if ok := p.InPlace(t.Context(), BackendFW4); !ok || !u.arrives(5*time.Second) {
		t.Fatalf("after fw4 reload: in place %v", ok)
	}
	if err := p.Close(t.Context(), BackendFW4); err != nil {
		t.Fatal(err)
	}
	if ok := p.InPlace(t.Context(), BackendFW4); ok || u.arrives(2*time.Second) {
		t.Fatalf("the port is still open after Close (in place %v)", ok)
	}
}

// TestPortRuleNFTables: the table of its own is loaded, checked against the port, and
// removed; a datagram from the WAN reaches the port meanwhile.
func TestPortRuleNFTables(t *testing.T) {
	if !testenv.InNetNS(t) {
		return
	}
	testenv.RequireCommand(t, "nft")
	u := newUDPPath(t)
	other := NewPortRule("peer-relay", u.port+1, nil)
	if err := other.Open(t.Context(), BackendNFTables); err != nil {
		t.Fatal(err)
	}
	p := NewPortRule("peer-relay", u.port, nil)
	if p.InPlace(t.Context(), BackendNFTables) {
		t.Fatal("a rule for another port reported in place")
	}
	if err := p.Open(t.Context(), BackendNFTables); err != nil {
		t.Fatal(err)
	}
	if !p.InPlace(t.Context(), BackendNFTables) {
		t.Fatal("not in place after Open")
	}
	testenv.WaitFor(t, time.Minute, "a datagram to the port", func() bool { return u.arrives(time.Second) })
	if err := p.Close(t.Context(), BackendNFTables); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("nft", "list", "tables").CombinedOutput()
	if strings.Contains(string(out), p.table) {
		t.Fatalf("table left after Close:\n%s", out)
	}
}
