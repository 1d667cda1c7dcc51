package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestSubnetRemoveWithBrokenConfig: package removal runs `subnet remove -c FILE`. A config
// that went bad after `subnet apply` must not leave forwarding and firewall rules behind.
func TestSubnetRemoveWithBrokenConfig(t *testing.T) {
	testenv.RequireRoot(t)
	ip := testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "iptables-save")
	ns := testenv.NewNetNS(t, ip)
	inNS := func(args ...string) (string, error) {
		out, err := exec.Command(ip, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := inNS(args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// tailscale0 and the LAN as the two ends of a veth pair: the kernel has no dummy module here.
	must(ip, "link", "add", "tailscale0", "type", "veth", "peer", "name", "lan0")
	must(ip, "link", "set", "tailscale0", "up")
	must(ip, "link", "set", "lan0", "up")
	forwarding := func() string { return must("cat", "/proc/sys/net/ipv4/ip_forward") }
	before := forwarding()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "edgerelay.yaml")
	good := "state_dir: " + dir + "\nsubnet:\n  lan_interfaces: [lan0]\n  routes: [192.168.77.0/24]\n  firewall: iptables\n  advertise: false\n"
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	must(binPath, "subnet", "apply", "-c", cfg)
	if forwarding() != "1" || !strings.Contains(must("iptables-save"), "edgerelay-forward") {
		t.Fatalf("apply did not set up forwarding and rules:\n%s", must("iptables-save"))
	}

	// The file goes bad (an edit, a failed upgrade): problems in the subnet section too.
	bad := "state_dir: " + dir + "\nsubnet:\n  firewall: pf\n  colour: blue\n"
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := inNS(binPath, "check", "-c", cfg); err == nil {
		t.Fatalf("check accepted the broken config:\n%s", out)
	}
	out := must(binPath, "subnet", "remove", "-c", cfg)
	if !strings.Contains(out, "subnet.firewall") || !strings.Contains(out, "subnet removed") {
		t.Errorf("remove should name the ignored problems and succeed:\n%s", out)
	}
	if got := forwarding(); got != before {
		t.Errorf("ip_forward %s after remove, was %s before apply", got, before)
	}
	if rules := must("iptables-save"); strings.Contains(rules, "edgerelay") {
		t.Errorf("rules left after remove:\n%s", rules)
	}
	// Everything undone: nothing left recorded.
	if left := dirNames(t, dir); strings.Join(left, " ") != "edgerelay.yaml" {
		t.Errorf("state dir after remove: %v, want only the config", left)
	}
}

// TestSubnetRemoveNeverApplied: package removal runs `subnet remove` on every box, most of
// which never used subnet routing; it succeeds and writes nothing into state_dir (an
// existing one, as the package makes it, or a missing one).
func TestSubnetRemoveNeverApplied(t *testing.T) {
	testenv.RequireRoot(t)
	ip := testenv.RequireCommand(t, "ip")
	ns := testenv.NewNetNS(t, ip)
	base := t.TempDir()
	cfgDir, state := filepath.Join(base, "config"), filepath.Join(base, "state")
	for _, d := range []string{cfgDir, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, stateDir := range []string{state, filepath.Join(base, "missing")} {
		cfg := filepath.Join(cfgDir, "edgerelay.yaml")
		if err := os.WriteFile(cfg, []byte("state_dir: "+stateDir+"\nrelay: {listen: \"127.0.0.1:0\", stun_listen: \"\"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(ip, "netns", "exec", ns, binPath, "subnet", "remove", "-c", cfg).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "subnet removed") {
			t.Errorf("subnet remove (state_dir %s): %v\n%s", stateDir, err, out)
		}
	}
	if left := dirNames(t, base); strings.Join(left, " ") != "config state" {
		t.Errorf("%s holds %v after remove, want only config and state", base, left)
	}
	if left := dirNames(t, state); len(left) > 0 {
		t.Errorf("remove wrote %v into a state_dir where subnet never ran", left)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
