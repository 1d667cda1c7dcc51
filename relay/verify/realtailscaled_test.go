package verify

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tailscale.com/client/local"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestMain removes the tailscaled built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.CleanupTools()
	os.Exit(code)
}

// fakeUplink gives namespace ns a default route over a veth pair whose both ends stay in ns
// (the gateway never answers, so nothing leaves), so tailscaled sees a network that is up
// and does not pause its control client.
func fakeUplink(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", "up0", "type", "veth", "peer", "name", "up1"},
		{"addr", "add", "10.99.0.2/24", "dev", "up0"},
		{"link", "set", "up0", "up"},
		{"link", "set", "up1", "up"},
		{"route", "add", "default", "via", "10.99.0.1", "dev", "up0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
	}
}

// TestRealTailscaledWhois asks a real, logged-out tailscaled v1.102.0 (no netmap): our
// request is what its LocalAPI expects (a nodekey-capable whois answers 404, not 400), and
// the refusal says the key is not in the netmap. Tailscale's own LocalAPI client gets the
// same answer.
func TestRealTailscaledWhois(t *testing.T) {
	ns := testenv.NewNetNS(t, testenv.RequireCommand(t, "ip"))
	dir, sock := testenv.TailscaledDir(t)
	lc := testenv.StartTailscaled(t, ns, dir)
	v := newSocketVerifier(t, sock)
	ctx := context.Background()
	if err := v.Preflight(ctx); err != nil {
		t.Fatalf("preflight against the real tailscaled: %v", err)
	}
	k := randomKey(t)
	start := time.Now()
	err := v.Check(ctx, k, src1)
	t.Logf("real tailscaled: %v (in %v)", err, time.Since(start).Round(time.Microsecond))
	if !errors.Is(err, ErrNotInNetmap) {
		t.Fatalf("got %v, want ErrNotInNetmap", err)
	}
	if _, err := lc.WhoIsNodeKey(ctx, tsKey(k)); !errors.Is(err, local.ErrPeerNotFound) {
		t.Fatalf("tailscale's LocalAPI client: %v, want ErrPeerNotFound (both must agree)", err)
	}
	if st := v.Stats(); st.Tailscaled.Refused != 1 || st.Tailscaled.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}
