package netfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// nftTable is the agent's own table for hosts with nftables but neither fw4 nor iptables.
const nftTable = "edgerelay"

// nftComment marks the rules the agent puts into fw4's chains through include files.
const nftComment = `comment "edgerelay"`

// nftRules renders the rule lines for each purpose, in nft syntax shared by both nft backends.
// Masquerade matches the tailnet source ranges: the input interface is not known in postrouting.
func nftRules(s fwSpec) (forward, srcnat, mss []string) {
	for _, lan := range s.lans {
		forward = append(forward,
			fmt.Sprintf("iifname %s oifname %s accept", nftQuote(s.ts), nftQuote(lan)),
			fmt.Sprintf("iifname %s oifname %s accept", nftQuote(lan), nftQuote(s.ts)))
		if s.snat {
			srcnat = append(srcnat, fmt.Sprintf("ip saddr %s oifname %s masquerade", tailnetV4, nftQuote(lan)))
			if s.v6 {
				srcnat = append(srcnat, fmt.Sprintf("ip6 saddr %s oifname %s masquerade", tailnetV6, nftQuote(lan)))
			}
		}
	}
	if s.mss {
		for _, dir := range []string{"oifname", "iifname"} {
			mss = append(mss, fmt.Sprintf("%s %s tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu", dir, nftQuote(s.ts)))
		}
	}
	return forward, srcnat, mss
}

// nftQuote quotes an interface name for nft; names were checked to hold no quotes.
func nftQuote(s string) string { return `"` + s + `"` }

func newNFT() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return errors.New("the nft program is not installed (install nftables)")
	}
	return nil
}

// nftablesFW keeps the rules in a table of its own ("inet edgerelay"), replaced atomically.
type nftablesFW struct {
	spec fwSpec
	log  *slog.Logger
}

func newNFTables(spec fwSpec, log *slog.Logger) (*nftablesFW, error) {
	if err := newNFT(); err != nil {
		return nil, fmt.Errorf("subnet.firewall nftables: %w", err)
	}
	return &nftablesFW{spec: spec, log: log}, nil
}

func (f *nftablesFW) name() string { return BackendNFTables }

type nftChain struct {
	name, hook string
	rules      []string
}

func (f *nftablesFW) chains() []nftChain {
	fwd, nat, mss := nftRules(f.spec)
	out := []nftChain{{"forward", "type filter hook forward priority filter; policy accept;", fwd}}
	if len(nat) > 0 {
		out = append(out, nftChain{"postrouting", "type nat hook postrouting priority srcnat; policy accept;", nat})
	}
	if len(mss) > 0 {
		out = append(out, nftChain{"mss", "type filter hook forward priority mangle; policy accept;", mss})
	}
	return out
}

func (f *nftablesFW) script() string {
	var b strings.Builder
	// Declaring then deleting makes the replacement one transaction whether or not it exists.
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", nftTable, nftTable, nftTable)
	for _, c := range f.chains() {
		fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n", c.name, c.hook)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// liveChains returns the rule count of each chain of our table, nil when the table is absent.
func liveRules(ctx context.Context, family, table string) (map[string][]string, error) {
	out, err := runCmd(ctx, "", "nft", "list", "table", family, table)
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return nil, nil
		}
		return nil, err
	}
	return parseNFTChains(out), nil
}

// parseNFTChains reads `nft list table` output into chain name → rule lines (declarations
// such as "type …" and "policy …" left out).
func parseNFTChains(out string) map[string][]string {
	chains := map[string][]string{}
	cur := ""
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "chain ") && strings.HasSuffix(line, "{"):
			cur = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "chain "), "{"))
			chains[cur] = []string{}
		case line == "}":
			cur = ""
		case cur == "" || line == "" || strings.HasPrefix(line, "type ") || strings.HasPrefix(line, "policy "):
		default:
			chains[cur] = append(chains[cur], line)
		}
	}
	return chains
}

func (f *nftablesFW) inPlace(ctx context.Context) (bool, map[string][]string, error) {
	live, err := liveRules(ctx, "inet", nftTable)
	if err != nil || live == nil {
		return false, live, err
	}
	want := f.chains()
	if len(live) != len(want) {
		return false, live, nil
	}
	for _, c := range want {
		if rules, ok := live[c.name]; !ok || len(rules) != len(c.rules) {
			return false, live, nil
		}
	}
	return true, live, nil
}

func (f *nftablesFW) apply(ctx context.Context, st *state) error {
	st.addFirewall(BackendNFTables)
	ok, _, err := f.inPlace(ctx)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if ok {
		return nil
	}
	if _, err := runCmd(ctx, f.script(), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("nftables: load table inet %s: %w", nftTable, err)
	}
	f.log.Info("firewall table written", "backend", BackendNFTables, "table", "inet "+nftTable)
	return nil
}

func (f *nftablesFW) remove(ctx context.Context, st *state) error {
	live, err := liveRules(ctx, "inet", nftTable)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if live != nil {
		if _, err := runCmd(ctx, "", "nft", "delete", "table", "inet", nftTable); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		f.log.Info("firewall table removed", "backend", BackendNFTables, "table", "inet "+nftTable)
	}
	st.dropFirewall(BackendNFTables)
	return nil
}

func (f *nftablesFW) show(ctx context.Context) []Item {
	var want []string
	for _, c := range f.chains() {
		want = append(want, fmt.Sprintf("%s: %d rules", c.name, len(c.rules)))
	}
	it := Item{Kind: "firewall", Name: "nft table inet " + nftTable, Want: strings.Join(want, ", ")}
	ok, live, err := f.inPlace(ctx)
	switch {
	case err != nil:
		it.Have = "error: " + err.Error()
	case live == nil:
		it.Have = "missing"
	default:
		var have []string
		for _, c := range f.chains() {
			have = append(have, fmt.Sprintf("%s: %d rules", c.name, len(live[c.name])))
		}
		it.Have = strings.Join(have, ", ")
	}
	it.InPlace = ok
	return []Item{it}
}

// fw4FW makes OpenWrt's firewall4 carry the rules itself: include files under
// /usr/share/nftables.d/chain-pre/<chain>/ are pulled into fw4's own chains on every
// `fw4 reload`, so the accept sits in front of fw4's drop policy and survives reloads.
// Rules written straight into `inet fw4` would be lost at the next reload.
type fw4FW struct {
	spec   fwSpec
	dir    string   // include root, /usr/share/nftables.d
	reload []string // command that rebuilds fw4's ruleset
	log    *slog.Logger
}

const fw4File = "50-edgerelay.nft"

func newFW4(spec fwSpec, dir string, reload []string, log *slog.Logger) (*fw4FW, error) {
	if len(reload) == 0 {
		return nil, errors.New("subnet.firewall fw4: no reload command")
	}
	if _, err := exec.LookPath(reload[0]); err != nil {
		return nil, fmt.Errorf("subnet.firewall fw4: %s not found (is this OpenWrt 22.03 or later with firewall4?)", reload[0])
	}
	if err := newNFT(); err != nil {
		return nil, fmt.Errorf("subnet.firewall fw4: %w", err)
	}
	return &fw4FW{spec: spec, dir: dir, reload: reload, log: log}, nil
}

func (f *fw4FW) name() string { return BackendFW4 }

// files maps each include path to its content; chains without rules get no file.
func (f *fw4FW) files() map[string]string {
	fwd, nat, mss := nftRules(f.spec)
	out := map[string]string{}
	for chain, rules := range map[string][]string{"forward": fwd, "srcnat": nat, "mangle_forward": mss} {
		if len(rules) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString("# Written by edgerelay (subnet router); removed by `edgerelay subnet remove`.\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "%s %s\n", r, nftComment)
		}
		out[filepath.Join(f.dir, "chain-pre", chain, fw4File)] = b.String()
	}
	return out
}

// allFiles lists every include path the backend may own, wanted or not.
func (f *fw4FW) allFiles() []string {
	var out []string
	for _, chain := range []string{"forward", "srcnat", "mangle_forward"} {
		out = append(out, filepath.Join(f.dir, "chain-pre", chain, fw4File))
	}
	return out
}

// liveCount counts rules carrying comment in fw4's live chain.
func liveCount(ctx context.Context, chain, comment string) (int, error) {
	out, err := runCmd(ctx, "", "nft", "list", "chain", "inet", "fw4", chain)
	if err != nil {
		return 0, err
	}
	return strings.Count(out, comment), nil
}

// state reports whether files hold the wanted content and fw4's chains carry the rules.
func (f *fw4FW) check(ctx context.Context) (filesOK, liveOK bool, err error) {
	want := f.files()
	filesOK, liveOK = true, true
	for _, p := range f.allFiles() {
		b, rerr := os.ReadFile(p)
		content, wanted := want[p]
		switch {
		case wanted && (rerr != nil || !bytes.Equal(b, []byte(content))):
			filesOK = false
		case !wanted && rerr == nil:
			filesOK = false
		}
		chain := filepath.Base(filepath.Dir(p))
		n, lerr := liveCount(ctx, chain, nftComment)
		if lerr != nil {
			if wanted {
				liveOK, err = false, lerr
			}
			continue
		}
		if n != strings.Count(content, nftComment) {
			liveOK = false
		}
	}
	return filesOK, liveOK, err
}

func (f *fw4FW) apply(ctx context.Context, st *state) error {
	st.addFirewall(BackendFW4)
	filesOK, liveOK, _ := f.check(ctx)
	if filesOK && liveOK {
		return nil
	}
	want := f.files()
	if err := f.validate(ctx, want); err != nil {
		return err
	}
	for _, p := range f.allFiles() {
		content, ok := want[p]
		if !ok {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("fw4: %w", err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := atomicfile.Write(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if !containsStr(st.FW4Files, p) {
			st.FW4Files = append(st.FW4Files, p)
		}
	}
	if _, err := runCmd(ctx, "", f.reload[0], f.reload[1:]...); err != nil {
		// A ruleset that fails to load leaves the router without its firewall: take our
		// files out again and reload, so at worst the subnet routing is missing.
		for p := range want {
			os.Remove(p)
		}
		if _, rerr := runCmd(ctx, "", f.reload[0], f.reload[1:]...); rerr != nil {
			f.log.Error("fw4 reload failed even without our includes", "err", rerr)
		}
		return fmt.Errorf("fw4: reload with includes under %s failed (includes taken out again): %w", f.dir, err)
	}
	f.log.Info("firewall includes written and fw4 reloaded", "backend", BackendFW4, "dir", f.dir)
	return nil
}

// fw4ChainTypes declares, for a syntax check, chains like fw4's that the includes go into.
var fw4ChainTypes = map[string]string{
	"forward":        "type filter hook forward priority filter;",
	"srcnat":         "type nat hook postrouting priority srcnat;",
	"mangle_forward": "type filter hook forward priority mangle;",
}

// validate checks the include contents with `nft -c` inside a throwaway table of the same
// family and chain types, before fw4 ever sees them.
func (f *fw4FW) validate(ctx context.Context, want map[string]string) error {
	var b strings.Builder
	b.WriteString("table inet edgerelay_check {\n")
	for p, content := range want {
		chain := filepath.Base(filepath.Dir(p))
		fmt.Fprintf(&b, "chain %s {\n%s\n", chain, fw4ChainTypes[chain])
		for line := range strings.SplitSeq(content, "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				b.WriteString(line + "\n")
			}
		}
		b.WriteString("}\n")
	}
	b.WriteString("}\n")
	if _, err := runCmd(ctx, b.String(), "nft", "-c", "-f", "-"); err != nil {
		return fmt.Errorf("fw4: our include rules do not pass nft's check: %w", err)
	}
	return nil
}

func (f *fw4FW) remove(ctx context.Context, st *state) error {
	changed := false
	for _, p := range append(f.allFiles(), st.FW4Files...) {
		err := os.Remove(p)
		if err == nil {
			changed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("fw4: %w", err)
		}
	}
	if changed {
		if _, err := runCmd(ctx, "", f.reload[0], f.reload[1:]...); err != nil {
			return fmt.Errorf("fw4: reload after removing includes: %w", err)
		}
		f.log.Info("firewall includes removed and fw4 reloaded", "backend", BackendFW4)
	}
	st.FW4Files = nil
	st.dropFirewall(BackendFW4)
	return nil
}

func (f *fw4FW) show(ctx context.Context) []Item {
	var items []Item
	want := f.files()
	for _, p := range f.allFiles() {
		content, wanted := want[p]
		n := strings.Count(content, nftComment)
		it := Item{Kind: "firewall", Name: "fw4 include " + p, Want: fmt.Sprintf("%d rules", n)}
		if !wanted {
			it.Want = "absent"
		}
		b, err := os.ReadFile(p)
		fileOK := (wanted && err == nil && string(b) == content) || (!wanted && err != nil)
		live, lerr := liveCount(ctx, filepath.Base(filepath.Dir(p)), nftComment)
		switch {
		case err != nil && wanted:
			it.Have = "file missing"
		case err == nil && !fileOK:
			it.Have = "file differs"
		case err != nil:
			it.Have = "absent"
		default:
			it.Have = "file written"
		}
		switch {
		case lerr != nil && wanted:
			it.Have += "; fw4 chain: " + lerr.Error()
		case lerr == nil:
			it.Have += fmt.Sprintf("; %d rules live in inet fw4", live)
		}
		it.InPlace = fileOK && (lerr == nil && live == n || lerr != nil && !wanted)
		items = append(items, it)
	}
	return items
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
