package openwrt

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
)

// shellScripts are the shipped shell scripts by file name.
var shellScripts = map[string][]byte{
	"edgerelay.init":         InitScript,
	"edgerelay.uci-defaults": UCIDefaults,
	"edgerelay.hotplug":      HotplugIface,
	"edgerelay.postinst":     PostinstPkg,
	"edgerelay.prerm":        PrermPkg,
	"luci.postinst":          LuCIPostinst,
}

// shells returns the POSIX shells to run scripts under: dash, and busybox ash (OpenWrt's
// own shell).
func shells(t *testing.T) [][]string {
	out := [][]string{{testenv.RequireCommand(t, "dash")}}
	out = append(out, []string{testenv.RequireCommand(t, "busybox"), "ash"})
	return out
}

// TestShellcheck runs `shellcheck -s sh` on every shipped script. The init script is
// sourced by /etc/rc.common (its shebang is `#!/bin/sh /etc/rc.common`), so -s sh is given
// explicitly; its only directive disables SC2034 (USE_PROCD/START/STOP are read by
// rc.common) and SC3043 (`local`, which busybox ash has).
func TestShellcheck(t *testing.T) {
	sc := testenv.RequireCommand(t, "shellcheck")
	for name := range shellScripts {
		out, err := exec.Command(sc, "-s", "sh", filepath.Join("files", name)).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s: %v\n%s", name, err, out)
		}
	}
	for _, sh := range shells(t) {
		for name := range shellScripts {
			args := append(sh[1:], "-n", filepath.Join("files", name))
			if out, err := exec.Command(sh[0], args...).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", sh, name, err, out)
			}
		}
	}
}

// TestDefaultConfigLoads: the shipped /etc/config/edgerelay passes the daemon's own loader
// and validation, runs only the relay on 12345/3478, and keeps state on flash.
func TestDefaultConfigLoads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "edgerelay")
	if err := os.WriteFile(p, DefaultConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("default UCI config: %v", err)
	}
	if cfg.StateDir != StateDir || cfg.LogLevel != "info" {
		t.Errorf("state_dir %q log_level %q", cfg.StateDir, cfg.LogLevel)
	}
	if !config.On(cfg.Relay.Enabled, true) || cfg.Relay.Listen != ":12345" || cfg.Relay.STUNAddr() != ":3478" {
		t.Errorf("relay: enabled %v listen %q stun %q", cfg.Relay.Enabled, cfg.Relay.Listen, cfg.Relay.STUNAddr())
	}
	if cfg.Relay.TLS.Mode != "self-signed" {
		t.Errorf("tls mode %q, want self-signed until acme is configured", cfg.Relay.TLS.Mode)
	}
	if cfg.DDNS != nil && config.On(cfg.DDNS.Enabled, true) {
		t.Error("ddns is on by default")
	}
	if cfg.ACME != nil && config.On(cfg.ACME.Enabled, true) {
		t.Error("acme is on by default")
	}
	if cfg.Subnet != nil && config.On(cfg.Subnet.Enabled, true) {
		t.Error("subnet is on by default")
	}
}

// memTotalKB reads MemTotal the way the init script does.
func memTotalKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func wantMemlimit(kb int) string {
	mib := kb / 1024 / 4
	mib = max(24, min(mib, 256))
	return fmt.Sprintf("%dMiB", mib)
}

// runUnderStubs sources the init script after the recording stubs and runs body.
func runUnderStubs(t *testing.T, sh []string, env []string, body string) []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	init := filepath.Join(dir, "edgerelay.init")
	if err := os.WriteFile(init, InitScript, 0o755); err != nil {
		t.Fatal(err)
	}
	stubs, err := filepath.Abs("testdata/procd-stubs.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := ". " + stubs + "\n. " + init + "\n" + body + "\n"
	cmd := exec.Command(sh[0], append(sh[1:], "-c", script)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "STUB_LOG=" + log}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", sh, err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestInitScriptUnderProcdStubs: start_service, service_triggers and reload_service emit
// exactly this instance definition and these triggers.
func TestInitScriptUnderProcdStubs(t *testing.T) {
	mem := wantMemlimit(memTotalKB(t))
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh[0]), func(t *testing.T) {
			got := runUnderStubs(t, sh, nil, "start_service; service_triggers; reload_service")
			want := []string{
				"config_load <edgerelay>",
				"config_get <state_dir> <main> <state_dir> </etc/edgerelay>",
				"mkdir <-p> </etc/edgerelay>",
				"chmod <0700> </etc/edgerelay>",
				"procd_open_instance",
				"procd_set_param <command> </usr/sbin/edgerelay> <run> <-c> </etc/config/edgerelay>",
				"procd_set_param <env> <GOMEMLIMIT=" + mem + ">",
				"procd_set_param <respawn> <3600> <5> <5>",
				"procd_set_param <stdout> <1>",
				"procd_set_param <stderr> <1>",
				"procd_set_param <limits> <nofile=16384 16384>",
				"procd_set_param <file> </usr/sbin/edgerelay>",
				"procd_set_param <term_timeout> <10>",
				"procd_close_instance",
				"procd_add_reload_trigger <edgerelay>",
				"procd_add_reload_interface_trigger <wan>",
				"procd_add_reload_interface_trigger <wan6>",
				"procd_add_reload_interface_trigger <lan>",
				"procd_send_signal <edgerelay> <*> <HUP>",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Exactly one env call: a second procd_set_param env would replace the first.
			n := 0
			for _, l := range got {
				if strings.HasPrefix(l, "procd_set_param <env>") || strings.HasPrefix(l, "procd_append_param <env>") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d env calls", n)
			}

			// A state_dir set in UCI is honoured.
			got = runUnderStubs(t, sh, []string{"UCI_main_state_dir=/srv/er"}, "start_service")
			if got[2] != "mkdir <-p> </srv/er>" {
				t.Errorf("custom state dir: %s", got[2])
			}
		})
	}
}

// TestMemlimit: the GOMEMLIMIT the init script picks for typical router RAM sizes.
func TestMemlimit(t *testing.T) {
	for _, sh := range shells(t) {
		for kb, want := range map[int]string{
			32768: "24MiB", 65536: "24MiB", 131072: "32MiB", 262144: "64MiB",
			524288: "128MiB", 1048576: "256MiB", 16777216: "256MiB",
		} {
			cmd := exec.Command(sh[0], append(sh[1:], "-c", ". testdata/procd-stubs.sh; . files/edgerelay.init; edgerelay_memlimit "+strconv.Itoa(kb))...)
			cmd.Env = []string{"STUB_LOG=/dev/null", "PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("%v: memlimit for %d kB = %q (%v), want %s", sh, kb, out, err, want)
			}
		}
	}
}

// sandbox runs script as root in a private mount namespace where /etc/init.d and
// /usr/sbin are replaced by recording stubs and `uci` is the file-backed stand-in. The host
// sees none of it.
type sandbox struct {
	dir, store, log string
}

func newSandbox(t *testing.T) *sandbox {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "unshare")
	d := t.TempDir()
	s := &sandbox{dir: d, store: filepath.Join(d, "uci.store"), log: filepath.Join(d, "log")}
	for _, sub := range []string{"initd", "sbin", "bin"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stub := func(p, body string) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stub(filepath.Join(d, "initd", "edgerelay"), `echo "init.d/edgerelay $*" >>"$UCI_LOG"; [ "$1" != enabled ] || exit "${ER_ENABLED:-0}"`+"\n")
	stub(filepath.Join(d, "initd", "firewall"), `echo "init.d/firewall $*" >>"$UCI_LOG"`+"\n")
	stub(filepath.Join(d, "sbin", "edgerelay"), `echo "edgerelay $*" >>"$UCI_LOG"`+"\n")
	uci, err := os.ReadFile("testdata/uci")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "bin", "uci"), uci, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *sandbox) seed(t *testing.T, lines ...string) {
	if err := os.WriteFile(s.store, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run executes a shipped script in the sandbox and returns the calls it made.
func (s *sandbox) run(t *testing.T, script []byte, env ...string) []string {
	t.Helper()
	p := filepath.Join(s.dir, "script")
	if err := os.WriteFile(p, script, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.log)
	inner := fmt.Sprintf("mount --bind %s/initd /etc/init.d && mount --bind %s/sbin /usr/sbin && exec /bin/sh %s",
		s.dir, s.dir, p)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", inner)
	cmd.Env = append([]string{"PATH=" + s.dir + "/bin:/usr/bin:/bin", "UCI_STORE=" + s.store, "UCI_LOG=" + s.log}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, _ := os.ReadFile(s.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (s *sandbox) values(t *testing.T) map[string]string {
	b, err := os.ReadFile(s.store)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestFirewallRulesAddedOnceAndRemoved: uci-defaults opens the configured relay and STUN
// ports from the WAN once (a second run adds nothing), and the removal script stops the
// daemon, undoes the subnet changes and deletes exactly those rules.
func TestFirewallRulesAddedOnceAndRemoved(t *testing.T) {
	s := newSandbox(t)
	s.seed(t, "edgerelay.relay=relay", "edgerelay.relay.listen=[::]:8443", "edgerelay.relay.stun_listen=:3478",
		"firewall.other=rule", "firewall.other.name=keep-me")
	s.run(t, UCIDefaults)
	want := map[string]string{
		"firewall.edgerelay_derp": "rule", "firewall.edgerelay_derp.name": "Allow-edgerelay-DERP",
		"firewall.edgerelay_derp.src": "wan", "firewall.edgerelay_derp.proto": "tcp",
		"firewall.edgerelay_derp.dest_port": "8443", "firewall.edgerelay_derp.target": "ACCEPT",
		"firewall.edgerelay_stun": "rule", "firewall.edgerelay_stun.name": "Allow-edgerelay-STUN",
		"firewall.edgerelay_stun.src": "wan", "firewall.edgerelay_stun.proto": "udp",
		"firewall.edgerelay_stun.dest_port": "3478", "firewall.edgerelay_stun.target": "ACCEPT",
	}
	got := s.values(t)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["firewall.edgerelay_derp.family"]; ok {
		t.Error("family set: the rule must cover IPv4 and IPv6")
	}
	before := len(got)
	calls := s.run(t, UCIDefaults)
	if len(s.values(t)) != before {
		t.Errorf("second run changed the store: %v", calls)
	}
	for _, c := range calls {
		if strings.Contains(c, "batch") {
			t.Errorf("second run wrote rules: %v", calls)
		}
	}

	// Upgrade: nothing happens.
	if calls := s.run(t, PrermPkg, "PKG_UPGRADE=1"); len(calls) != 1 || calls[0] != "" {
		t.Errorf("prerm on upgrade made calls: %q", calls)
	}
	calls = s.run(t, PrermPkg)
	wantCalls := []string{
		"init.d/edgerelay stop",
		"edgerelay subnet remove -c /etc/config/edgerelay",
		"uci -q delete firewall.edgerelay_derp",
		"uci -q delete firewall.edgerelay_stun",
		"uci commit firewall",
		"init.d/firewall reload",
	}
	if strings.Join(calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("prerm calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(wantCalls, "\n"))
	}
	got = s.values(t)
	for k := range got {
		if strings.HasPrefix(k, "firewall.edgerelay") {
			t.Errorf("%s left behind", k)
		}
	}
	if got["firewall.other.name"] != "keep-me" || got["edgerelay.relay.listen"] != "[::]:8443" {
		t.Errorf("removal touched other config: %v", got)
	}
}

// TestFirewallNoSTUNRuleWhenOff: stun_listen 'off' (UCI cannot hold an empty option) opens
// only the relay's port.
func TestFirewallNoSTUNRuleWhenOff(t *testing.T) {
	s := newSandbox(t)
	s.seed(t, "edgerelay.relay=relay", "edgerelay.relay.stun_listen=off")
	s.run(t, UCIDefaults)
	got := s.values(t)
	if got["firewall.edgerelay_derp.dest_port"] != "12345" {
		t.Errorf("relay rule: %v", got)
	}
	for k := range got {
		if strings.HasPrefix(k, "firewall.edgerelay_stun") {
			t.Errorf("%s = %q with STUN off", k, got[k])
		}
	}
}

// TestHotplugReappliesSubnet: the iface hook runs `edgerelay subnet apply` only for WAN/LAN
// up events, with the service enabled and a subnet section not switched off.
func TestHotplugReappliesSubnet(t *testing.T) {
	s := newSandbox(t)
	apply := "edgerelay subnet apply -c /etc/config/edgerelay"
	for _, c := range []struct {
		name  string
		store []string
		env   []string
		apply bool
	}{
		{"wan up", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifup", "INTERFACE=wan"}, true},
		{"lan up", []string{"edgerelay.subnet=subnet", "edgerelay.subnet.enabled=1"}, []string{"ACTION=ifup", "INTERFACE=lan"}, true},
		{"wan6 new address", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifupdate", "INTERFACE=wan6", "IFUPDATE_ADDRESSES=1"}, true},
		{"wan6 no change", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifupdate", "INTERFACE=wan6"}, false},
		{"wan down", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifdown", "INTERFACE=wan"}, false},
		{"guest up", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifup", "INTERFACE=guest"}, false},
		{"subnet off", []string{"edgerelay.subnet=subnet", "edgerelay.subnet.enabled=0"}, []string{"ACTION=ifup", "INTERFACE=wan"}, false},
		{"no subnet", []string{"edgerelay.relay=relay"}, []string{"ACTION=ifup", "INTERFACE=wan"}, false},
		{"service disabled", []string{"edgerelay.subnet=subnet"}, []string{"ACTION=ifup", "INTERFACE=wan", "ER_ENABLED=1"}, false},
	} {
		s.seed(t, c.store...)
		calls := s.run(t, HotplugIface, c.env...)
		ran := false
		for _, l := range calls {
			ran = ran || l == apply
		}
		if ran != c.apply {
			t.Errorf("%s: applied %v, want %v (calls %q)", c.name, ran, c.apply, calls)
		}
	}
}

// TestFeedMakefileAgrees: the SDK recipe installs the same files at the same paths with
// the same modes, and its postinst/prerm are the shipped postinst-pkg/prerm-pkg.
func TestFeedMakefileAgrees(t *testing.T) {
	mk := string(FeedMakefile)
	define := func(name string) string {
		re := regexp.MustCompile(`(?s)\ndefine ` + regexp.QuoteMeta(name) + `\n(.*?)\nendef\n`)
		m := re.FindStringSubmatch(mk)
		if m == nil {
			t.Fatalf("no define %s", name)
		}
		return strings.ReplaceAll(m[1], "$$", "$") + "\n"
	}
	if got := define("Package/edgerelay/postinst"); got != string(PostinstPkg) {
		t.Errorf("Makefile postinst differs from files/edgerelay.postinst:\n%s", got)
	}
	if got := define("Package/edgerelay/prerm"); got != string(PrermPkg) {
		t.Errorf("Makefile prerm differs from files/edgerelay.prerm:\n%s", got)
	}
	modes := map[string]uint32{"INSTALL_BIN": 0o755, "INSTALL_CONF": 0o600, "INSTALL_DATA": 0o644}
	// Sources: ./files/X is openwrt/files/X; $(PKG_BUILD_DIR) is the checked-out repository.
	re := regexp.MustCompile(`\$\((INSTALL_BIN|INSTALL_CONF|INSTALL_DATA)\) (\./files/|\$\(PKG_BUILD_DIR\)/)(\S+) \$\(1\)(\S+)`)
	installed := map[string]uint32{}
	byPath := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(mk, -1) {
		installed[m[4]] = modes[m[1]]
		byPath[m[4]] = filepath.Join(map[string]string{"./files/": "files", "$(PKG_BUILD_DIR)/": ".."}[m[2]], m[3])
	}
	for _, f := range Install() {
		if installed[f.Path] != f.Mode {
			t.Errorf("%s: Makefile mode %o, package %o", f.Path, installed[f.Path], f.Mode)
		}
		src, err := os.ReadFile(byPath[f.Path])
		if err != nil || !bytes.Equal(src, f.Data) {
			t.Errorf("%s: Makefile installs %s, which is not what the package ships (%v)", f.Path, byPath[f.Path], err)
		}
		delete(installed, f.Path)
	}
	if len(installed) > 0 {
		t.Errorf("Makefile installs files the package does not: %v", installed)
	}
	for _, c := range Conffiles {
		if !strings.Contains(define("Package/edgerelay/conffiles"), c) {
			t.Errorf("conffile %s missing from the Makefile", c)
		}
	}
	checkFeedMetadata(t, "Makefile", mk, map[string]string{"PKG_LICENSE_FILES": "LICENSE", "URL": edgerelay.URL})
	// The LuCI app's source is its own directory, which has no LICENSE file to name.
	luci, err := os.ReadFile(filepath.Join(LuCIPackage, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	checkFeedMetadata(t, LuCIPackage+"/Makefile", string(luci), map[string]string{"LUCI_URL": edgerelay.URL})
}

// checkFeedMetadata: a feed recipe names the license and the maintainer as the packages do,
// and the variables in more.
func checkFeedMetadata(t *testing.T, name, mk string, more map[string]string) {
	t.Helper()
	want := map[string]string{"PKG_LICENSE": edgerelay.LicenseID, "PKG_MAINTAINER": edgerelay.Maintainer}
	maps.Copy(want, more)
	for k, want := range want {
		m := regexp.MustCompile(`(?m)^\s*` + k + `:=(.*)$`).FindStringSubmatch(mk)
		if m == nil || m[1] != want {
			t.Errorf("%s: %s is %q, want %q", name, k, m, want)
		}
	}
}
