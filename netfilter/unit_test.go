package netfilter

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edgerelay/edgerelay/agent/localapi"
	"github.com/edgerelay/edgerelay/agent/testenv"
)

func TestMergeRoutes(t *testing.T) {
	user := mustPrefixes("0.0.0.0/0", "::/0", "10.99.0.0/24", "192.168.1.0/24")
	// First apply: 192.168.1.0/24 was already advertised by the user, so it stays the user's.
	next, owned := mergeRoutes(user, nil, mustPrefixes("192.168.1.0/24", "2001:db8:1::/64"))
	if want := mustPrefixes("0.0.0.0/0", "10.99.0.0/24", "192.168.1.0/24", "::/0", "2001:db8:1::/64"); !slices.Equal(next, want) {
		t.Errorf("next = %v, want %v", next, want)
	}
	if want := mustPrefixes("2001:db8:1::/64"); !slices.Equal(owned, want) {
		t.Errorf("owned = %v, want %v", owned, want)
	}
	// The prefix changes: ours is replaced, everything else stays.
	next, owned = mergeRoutes(next, owned, mustPrefixes("192.168.1.0/24", "2001:db8:2::/64"))
	if want := mustPrefixes("0.0.0.0/0", "10.99.0.0/24", "192.168.1.0/24", "::/0", "2001:db8:2::/64"); !slices.Equal(next, want) {
		t.Errorf("after change: next = %v, want %v", next, want)
	}
	// Removal leaves exactly the user's list.
	next, owned = mergeRoutes(next, owned, nil)
	sortPrefixes(user)
	if !slices.Equal(next, user) || len(owned) != 0 {
		t.Errorf("after remove: next = %v owned = %v, want %v and none", next, owned, user)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{LANInterfaces: []string{"br/lan"}}, "subnet.lan_interfaces[0]"},
		{Config{LANInterfaces: []string{"averyveryverylongname"}}, "subnet.lan_interfaces[0]"},
		{Config{LANInterfaces: []string{`a"b`}}, "subnet.lan_interfaces[0]"},
		{Config{TailscaleInterface: ".."}, "subnet.tailscale_interface"},
		{Config{LANInterfaces: []string{"tailscale0"}}, "is the tailscale interface"},
		{Config{RulePriority: 5250}, "subnet.rule_priority"},
		{Config{Firewall: "pf"}, "subnet.firewall"},
	} {
		_, err := New(tc.cfg, dir, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{LANInterfaces: []string{"eth0.2"}}, dir, nil); err != nil {
		t.Errorf("interface with a dot: %v", err)
	}
	if _, err := New(Config{}, "", nil); err == nil {
		t.Error("no state dir accepted")
	}
}

// TestSysctlRecordRestore runs the record/restore logic against a stand-in /proc/sys tree
// (no root needed), with an interface name holding a dot.
func TestSysctlRecordRestore(t *testing.T) {
	proc := t.TempDir()
	files := map[string]string{
		"net/ipv4/ip_forward":                "0",
		"net/ipv6/conf/all/forwarding":       "1", // already on (OpenWrt): accept_ra left alone
		"net/ipv6/conf/eth0.2/accept_ra":     "1",
		"net/ipv4/conf/all/rp_filter":        "0",
		"net/ipv4/conf/eth0.2/rp_filter":     "1",
		"net/ipv4/conf/tailscale0/rp_filter": "2",
	}
	for p, v := range files {
		f := filepath.Join(proc, p)
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, []byte(v+"\n"), 0o644)
	}
	r, err := New(Config{LANInterfaces: []string{"eth0.2"}}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.procSys = proc
	st := &state{}
	if err := r.applySysctls(st); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(proc, p))
		return strings.TrimSpace(string(b))
	}
	for p, want := range map[string]string{
		"net/ipv4/ip_forward": "1", "net/ipv4/conf/eth0.2/rp_filter": "2",
		"net/ipv6/conf/eth0.2/accept_ra": "1", "net/ipv4/conf/all/rp_filter": "0",
	} {
		if got := read(p); got != want {
			t.Errorf("after apply %s = %s, want %s", p, got, want)
		}
	}
	saved, err := loadState(r.stateDir)
	if err != nil || len(saved.Sysctls) != 2 {
		t.Fatalf("recorded state %+v, %v: want ip_forward and eth0.2 rp_filter", saved, err)
	}
	if err := r.applySysctls(st); err != nil || len(st.Sysctls) != 2 {
		t.Errorf("second apply: %v, records %+v", err, st.Sysctls)
	}
	if err := r.removeSysctls(st); err != nil {
		t.Fatal(err)
	}
	for p, v := range files {
		if got := read(p); got != v {
			t.Errorf("after remove %s = %s, want %s", p, got, v)
		}
	}
	if len(st.Sysctls) != 0 {
		t.Errorf("records left: %+v", st.Sysctls)
	}
}

func TestMissingIPTables(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := newIPTables(fwSpec{ts: "tailscale0", lans: []string{"br-lan"}}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "iptables program is not installed") {
		t.Errorf("newIPTables without iptables: %v", err)
	}
	_, err = newNFTables(fwSpec{}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "nft program is not installed") {
		t.Errorf("newNFTables without nft: %v", err)
	}
	r, _ := New(Config{Firewall: "auto"}, t.TempDir(), nil)
	if _, err := r.selectFirewall(context.Background()); err == nil || !strings.Contains(err.Error(), "no usable firewall") {
		t.Errorf("auto without any firewall: %v", err)
	}
}

// TestNotRoot runs apply as an unprivileged user in a namespace of its own: a clear error
// naming what is missing, and nothing changed.
func TestNotRoot(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "setpriv")
	// The unprivileged user must be able to reach the binary and config: t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "edgerelay-notroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "nf.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nrelay: {enabled: false}\nsubnet: {lan_interfaces: [lan0], firewall: none, advertise: false}\n"), 0o644)
	ns := randName() + "-nr"
	addNS(t, ns)
	cmd := exec.Command("ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", bin)
	cmd.Env = append(os.Environ(), helperEnv+"=apply", "EDGERELAY_NF_CONFIG="+cfg)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root (or CAP_NET_ADMIN)") {
		t.Errorf("apply as nobody: %v\n%s", err, out)
	}
	if v := sysctlIn(t, ns, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("ip_forward = %s after a refused apply", v)
	}
}

// fakeHeadscale follows headscale's v1 REST API (GET /api/v1/node, POST
// /api/v1/node/{id}/approve_routes replacing the approved set, Bearer API keys); a real
// headscale server cannot run here.
type fakeHeadscale struct {
	mu       sync.Mutex
	approved map[string][]string // node id -> routes
	keys     map[string]string   // node id -> node key
}

func (f *fakeHeadscale) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer secret-key" {
		http.Error(w, `{"code":16,"message":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/node":
		var nodes []map[string]any
		for id, key := range f.keys {
			nodes = append(nodes, map[string]any{"id": id, "nodeKey": key, "approvedRoutes": f.approved[id]})
		}
		json.NewEncoder(w).Encode(map[string]any{"nodes": nodes})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/approve_routes"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v1/node/"), "/approve_routes")
		if _, ok := f.keys[id]; !ok {
			http.Error(w, `{"code":5,"message":"node not found"}`, http.StatusNotFound)
			return
		}
		var body struct{ Routes []string }
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, `{"code":3,"message":"bad body"}`, http.StatusBadRequest)
			return
		}
		f.approved[id] = body.Routes
		json.NewEncoder(w).Encode(map[string]any{"node": map[string]any{"id": id, "approvedRoutes": body.Routes}})
	default:
		http.NotFound(w, r)
	}
}

func TestHeadscaleApprove(t *testing.T) {
	hs := &fakeHeadscale{
		approved: map[string][]string{"7": {"0.0.0.0/0", "::/0", "10.1.0.0/16"}},
		keys:     map[string]string{"7": "nodekey:abcd", "8": "nodekey:other"},
	}
	srv := httptest.NewServer(hs)
	defer srv.Close()
	r, _ := New(Config{}, t.TempDir(), nil)
	st := &state{}
	ctx := context.Background()
	want := mustPrefixes("192.168.1.0/24", "2001:db8:1::/64")
	if err := r.approveOn(ctx, srv.Client(), srv.URL, "secret-key", "nodekey:abcd", st, want); err != nil {
		t.Fatal(err)
	}
	if got, w := hs.approved["7"], []string{"0.0.0.0/0", "10.1.0.0/16", "192.168.1.0/24", "::/0", "2001:db8:1::/64"}; !slices.Equal(got, w) {
		t.Errorf("approved %v, want %v", got, w)
	}
	if err := r.approveOn(ctx, srv.Client(), srv.URL, "secret-key", "nodekey:abcd", st, mustPrefixes("192.168.1.0/24", "2001:db8:2::/64")); err != nil {
		t.Fatal(err)
	}
	if got, w := hs.approved["7"], []string{"0.0.0.0/0", "10.1.0.0/16", "192.168.1.0/24", "::/0", "2001:db8:2::/64"}; !slices.Equal(got, w) {
		t.Errorf("after prefix change approved %v, want %v", got, w)
	}
	if err := r.approveOn(ctx, srv.Client(), srv.URL, "secret-key", "nodekey:abcd", st, nil); err != nil {
		t.Fatal(err)
	}
	if got, w := hs.approved["7"], []string{"0.0.0.0/0", "10.1.0.0/16", "::/0"}; !slices.Equal(got, w) {
		t.Errorf("after withdrawal approved %v, want %v", got, w)
	}
	err := r.approveOn(ctx, srv.Client(), srv.URL, "wrong", "nodekey:abcd", st, want)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong API key: %v", err)
	}
	err = r.approveOn(ctx, srv.Client(), srv.URL, "secret-key", "nodekey:missing", st, want)
	if err == nil || !strings.Contains(err.Error(), "no node with this node's key") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestLocalAPIUnreachable(t *testing.T) {
	_, err := newLocalAPI(filepath.Join(t.TempDir(), "none.sock")).Prefs(context.Background())
	if err == nil || !strings.Contains(err.Error(), "subnet.tailscaled_socket") {
		t.Errorf("prefs without tailscaled: %v", err)
	}
}

func FuzzParsePrefs(f *testing.F) {
	f.Add([]byte(`{"AdvertiseRoutes":["192.168.1.0/24","::/0"],"RouteAll":false}`))
	f.Add([]byte(`{"AdvertiseRoutes":null}`))
	f.Add([]byte(`{"AdvertiseRoutes":["300.1.1.1/99"]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := localapi.ParsePrefs(b)
		if err != nil {
			return
		}
		for _, r := range p.AdvertiseRoutes {
			if !r.IsValid() {
				t.Fatalf("invalid prefix %v accepted", r)
			}
		}
		next, _ := mergeRoutes(p.AdvertiseRoutes, nil, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
		if !slices.Contains(next, netip.MustParsePrefix("10.0.0.0/8")) {
			t.Fatal("merge lost the wanted route")
		}
	})
}

func FuzzParseHeadscaleNodes(f *testing.F) {
	f.Add([]byte(`{"nodes":[{"id":"1","nodeKey":"nodekey:ab","approvedRoutes":["10.0.0.0/8"]}]}`))
	f.Add([]byte(`{"nodes":[{"id":1}]}`))
	f.Add([]byte(`{"nodes":[{"id":"x"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := parseHeadscaleNodes(b)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if _, err := n.ID.Int64(); err != nil {
				t.Fatalf("node id %q accepted", n.ID)
			}
			parsePrefixes(n.ApprovedRoutes)
		}
	})
}

func FuzzParseNFTChains(f *testing.F) {
	f.Add("table inet edgerelay {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname \"a\" accept\n\t}\n}\n")
	f.Add("chain {\n}\n}}")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		for name, rules := range parseNFTChains(s) {
			if strings.ContainsAny(name, "\n") {
				t.Fatalf("chain name %q spans lines", name)
			}
			for _, r := range rules {
				if r == "" || r == "}" {
					t.Fatalf("empty or closing line %q taken as a rule", r)
				}
			}
		}
	})
}

func TestNFTRulesRender(t *testing.T) {
	fwd, nat, mss := nftRules(fwSpec{ts: "tailscale0", lans: []string{"br-lan", "eth0.2"}, snat: true, mss: true, v6: true})
	if len(fwd) != 4 || len(nat) != 4 || len(mss) != 2 {
		t.Fatalf("rules: %q %q %q", fwd, nat, mss)
	}
	if nat[0] != `ip saddr 100.64.0.0/10 oifname "br-lan" masquerade` {
		t.Errorf("nat rule %q", nat[0])
	}
	_, nat, mss = nftRules(fwSpec{ts: "tailscale0", lans: []string{"br-lan"}})
	if len(nat) != 0 || len(mss) != 0 {
		t.Errorf("snat/mss off still render rules: %q %q", nat, mss)
	}
}
