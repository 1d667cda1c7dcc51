package packaging

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// TestMipsleRelayUnderQEMU runs the router build on an emulated MIPS CPU and relays packets
// between two Tailscale clients through it: the DERP map comes from the emulated binary's own
// derpmap output (self-signed, pinned), and the round trip crosses the emulated relay.
func TestMipsleRelayUnderQEMU(t *testing.T) {
	qemu := testenv.RequireCommand(t, "qemu-mipsel-static")
	bin := MipsleSoftfloatBinary(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: \"\"\n  region: {id: 950, code: mips, name: MIPS}\n  tls: {mode: self-signed}\n", dir, port)), 0o600)

	out, err := exec.Command(qemu, bin, "derpmap", "-c", cfg, "--format", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("derpmap under qemu: %v\n%s", err, out)
	}
	var dm tailcfg.DERPMap
	if err := json.Unmarshal(out, &dm); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	region := dm.Regions[950]
	if region == nil {
		t.Fatalf("no region in\n%s", out)
	}

	startLogged(t, "daemon", qemu, bin, "run", "-c", cfg)
	waitListening(t, port, "the emulated relay")
	a, b := derptest.Connect(t, region, key.NewNode()), derptest.Connect(t, region, key.NewNode())
	for i, n := range []int{1, 1200, 65536} {
		a.Send(b.Pub(), derptest.Pattern(n, byte(i)))
		b.ExpectPacket(a.Pub(), derptest.Pattern(n, byte(i)))
		b.Send(a.Pub(), derptest.Pattern(n, byte(i+50)))
		a.ExpectPacket(b.Pub(), derptest.Pattern(n, byte(i+50)))
	}
}
