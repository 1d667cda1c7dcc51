package netfilter

import (
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

// PortRule opens one UDP port of the box itself (a service it runs, such as tailscaled's
// peer relay) from every interface, with the same backends as the subnet rules: an iptables
// chain jumped to from INPUT, an nftables table of its own, or an fw4 include in fw4's input
// chain. Name names the chain, table and file ("peer-relay").
type PortRule struct {
	Name string
	Port int
	log  *slog.Logger

	fw4Dir    string
	fw4Reload []string
}

// NewPortRule returns the rule; opts take WithFW4 as a Reconciler does.
func NewPortRule(name string, port int, log *slog.Logger, opts ...Option) *PortRule {
	r := &Reconciler{fw4Dir: "/usr/share/nftables.d", fw4Reload: []string{"fw4", "-q", "reload"}}
	for _, o := range opts {
		o(r)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PortRule{Name: name, Port: port, log: log, fw4Dir: r.fw4Dir, fw4Reload: r.fw4Reload}
}

func (p *PortRule) chain() string   { return "edgerelay-" + p.Name }
func (p *PortRule) table() string   { return "edgerelay_" + strings.ReplaceAll(p.Name, "-", "_") }
func (p *PortRule) comment() string { return `comment "edgerelay ` + p.Name + `"` }
func (p *PortRule) fw4Path() string {
	return filepath.Join(p.fw4Dir, "chain-pre", "input", "50-edgerelay-"+p.Name+".nft")
}

// Resolve turns a firewall setting (auto, iptables, nftables, fw4, none) into the backend
// to use, as subnet.firewall resolves: auto picks fw4 when present, else iptables when it
// works, else nftables.
func (p *PortRule) Resolve(setting string) (string, error) {
	switch setting {
	case "auto", "":
		if _, err := exec.LookPath(p.fw4Reload[0]); err == nil {
			return BackendFW4, nil
		}
		if _, err := newIPTables(fwSpec{}, p.log); err == nil {
			return BackendIPTables, nil
		}
		if err := newNFT(); err == nil {
			return BackendNFTables, nil
		}
		return "", errors.New("firewall auto: no usable firewall (neither fw4, iptables nor nft); install one or set firewall: none")
	case BackendFW4, BackendIPTables, BackendNFTables, BackendNone:
		return setting, nil
	}
	return "", fmt.Errorf("unknown firewall backend %q", setting)
}

func (p *PortRule) ipChain() ipChain {
	return ipChain{table: "filter", chain: p.chain(), hook: "INPUT",
		rules: [][]string{{"-p", "udp", "-m", "udp", "--dport", fmt.Sprint(p.Port), "-j", "ACCEPT"}}}
}

func (p *PortRule) nftScript() string {
	t := p.table()
	return fmt.Sprintf("table inet %s\ndelete table inet %s\ntable inet %s {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport %d accept\n\t}\n}\n", t, t, t, p.Port)
}

func (p *PortRule) fw4Content() string {
	return fmt.Sprintf("# Written by edgerelay (%s); removed when it is turned off and on package removal.\nudp dport %d accept %s\n", p.Name, p.Port, p.comment())
}

// Open makes the port reachable with backend (resolved); none does nothing.
func (p *PortRule) Open(ctx context.Context, backend string) error {
	switch backend {
	case BackendIPTables:
		f, err := newIPTables(fwSpec{v6: hasIPv6()}, p.log)
		if err != nil {
			return err
		}
		var errs []error
		for _, fam := range f.families() {
			errs = append(errs, f.ensureChain(fam.ipt, p.ipChain(), fam.v6))
		}
		return errors.Join(errs...)
	case BackendNFTables:
		if ok, _ := p.nftInPlace(ctx); ok {
			return nil
		}
		if _, err := runCmd(ctx, p.nftScript(), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("nftables: load table inet %s: %w", p.table(), err)
		}
		p.log.Info("firewall table written", "backend", backend, "table", "inet "+p.table(), "udp_port", p.Port)
	case BackendFW4:
		if b, err := os.ReadFile(p.fw4Path()); err == nil && string(b) == p.fw4Content() {
			if n, err := liveCount(ctx, "input", p.comment()); err == nil && n == 1 {
				return nil
			}
		}
		f := &fw4FW{dir: p.fw4Dir, reload: p.fw4Reload, log: p.log}
		want := map[string]string{p.fw4Path(): p.fw4Content()}
		if err := f.validate(ctx, want); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p.fw4Path()), 0o755); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := atomicfile.Write(p.fw4Path(), []byte(p.fw4Content()), 0o644); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if _, err := runCmd(ctx, "", p.fw4Reload[0], p.fw4Reload[1:]...); err != nil {
			os.Remove(p.fw4Path()) // never leave the router with a ruleset that does not load
			runCmd(ctx, "", p.fw4Reload[0], p.fw4Reload[1:]...)
			return fmt.Errorf("fw4: reload with %s failed (taken out again): %w", p.fw4Path(), err)
		}
		p.log.Info("firewall include written and fw4 reloaded", "backend", backend, "file", p.fw4Path(), "udp_port", p.Port)
	}
	return nil
}

// Close removes what Open made with backend (whatever port it opened).
func (p *PortRule) Close(ctx context.Context, backend string) error {
	switch backend {
	case BackendIPTables:
		f, err := newIPTables(fwSpec{v6: hasIPv6()}, p.log)
		if err != nil {
			return err
		}
		var errs []error
		for _, fam := range f.families() {
			errs = append(errs, dropChain(fam.ipt, p.ipChain()))
		}
		return errors.Join(errs...)
	case BackendNFTables:
		live, err := liveRules(ctx, "inet", p.table())
		if err != nil || live == nil {
			return err
		}
		if _, err := runCmd(ctx, "", "nft", "delete", "table", "inet", p.table()); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		p.log.Info("firewall table removed", "backend", backend, "table", "inet "+p.table())
	case BackendFW4:
		err := os.Remove(p.fw4Path())
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if _, err := runCmd(ctx, "", p.fw4Reload[0], p.fw4Reload[1:]...); err != nil {
			return fmt.Errorf("fw4: reload after removing %s: %w", p.fw4Path(), err)
		}
		p.log.Info("firewall include removed and fw4 reloaded", "backend", backend, "file", p.fw4Path())
	}
	return nil
}

// InPlace reports whether the port is open with backend, and what is there.
func (p *PortRule) InPlace(ctx context.Context, backend string) (bool, string) {
	switch backend {
	case BackendIPTables:
		f, err := newIPTables(fwSpec{v6: hasIPv6()}, p.log)
		if err != nil {
			return false, err.Error()
		}
		for _, fam := range f.families() {
			ok, err := chainInPlace(fam.ipt, p.ipChain())
			jump, jerr := fam.ipt.Exists("filter", "INPUT", "-j", p.chain())
			if err != nil || jerr != nil || !ok || !jump {
				return false, fmt.Sprintf("%s chain %s missing or not jumped to from INPUT", famName(fam.v6), p.chain())
			}
		}
		return true, fmt.Sprintf("iptables chain %s accepts udp %d", p.chain(), p.Port)
	case BackendNFTables:
		ok, err := p.nftInPlace(ctx)
		if err != nil {
			return false, err.Error()
		}
		if !ok {
			return false, "nft table inet " + p.table() + " missing or different"
		}
		return true, fmt.Sprintf("nft table inet %s accepts udp %d", p.table(), p.Port)
	case BackendFW4:
		b, err := os.ReadFile(p.fw4Path())
		n, lerr := liveCount(ctx, "input", p.comment())
		if err != nil || string(b) != p.fw4Content() || lerr != nil || n != 1 {
			return false, "fw4 include " + p.fw4Path() + " missing or not loaded"
		}
		return true, fmt.Sprintf("fw4 include %s accepts udp %d", p.fw4Path(), p.Port)
	}
	return true, "firewall: none (open the port yourself)"
}

func (p *PortRule) nftInPlace(ctx context.Context) (bool, error) {
	live, err := liveRules(ctx, "inet", p.table())
	if err != nil || live == nil {
		return false, err
	}
	rules := live["input"]
	return len(live) == 1 && len(rules) == 1 && rules[0] == fmt.Sprintf("udp dport %d accept", p.Port), nil
}

// hasIPv6 reports whether the host has IPv6 (ip6tables rules are skipped without).
func hasIPv6() bool { return (&Reconciler{procSys: "/proc/sys"}).ipv6() }
