package netfilter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// PortRule opens one UDP port of the box itself (a service it runs, such as tailscaled's
// peer relay) from every interface, with the same backends as the subnet rules: an iptables
// chain jumped to from INPUT, an nftables table of its own, or an fw4 include in fw4's input
// chain. Name names the chain, table and file ("peer-relay").
type PortRule struct {
	Name string
	Port int
	r    *Reconciler // its fw4 paths, logger and firewall selection
}

// NewPortRule returns the rule; opts take WithFW4 as a Reconciler does.
func NewPortRule(name string, port int, log *slog.Logger, opts ...Option) *PortRule {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{log: log, procSys: "/proc/sys", fw4Dir: "/usr/share/nftables.d", fw4Reload: []string{"fw4", "-q", "reload"}}
	for _, o := range opts {
		o(r)
	}
	return &PortRule{Name: name, Port: port, r: r}
}

func (p *PortRule) chain() string   { return "edgerelay-" + p.Name }
func (p *PortRule) table() string   { return "edgerelay_" + strings.ReplaceAll(p.Name, "-", "_") }
func (p *PortRule) comment() string { return `comment "edgerelay ` + p.Name + `"` }
func (p *PortRule) fw4Path() string {
	return filepath.Join(p.r.fw4Dir, "chain-pre", "input", "50-edgerelay-"+p.Name+".nft")
}

// Resolve turns a firewall setting (auto, iptables, nftables, fw4, none) into the backend
// to use, as subnet.firewall resolves (its errors name that key).
func (p *PortRule) Resolve(ctx context.Context, setting string) (string, error) {
	p.r.cfg.Firewall = setting
	fw, err := p.r.selectFirewall(ctx)
	if fw == nil {
		return BackendNone, err
	}
	return fw.name(), nil
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
		return p.eachIPT(func(f *iptablesFW, ipt *iptables.IPTables, v6 bool) error { return f.ensureChain(ipt, p.ipChain(), v6) })
	case BackendNFTables:
		if _, err := runCmd(ctx, p.nftScript(), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
	case BackendFW4:
		// One fixed rule with a number in it: nothing for nft -c to catch that the reload's
		// rollback would not.
		if err := os.MkdirAll(filepath.Dir(p.fw4Path()), 0o755); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := atomicfile.Write(p.fw4Path(), []byte(p.fw4Content()), 0o644); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := p.reloadFW4(ctx); err != nil {
			os.Remove(p.fw4Path()) // never leave the router with a ruleset that does not load
			p.reloadFW4(ctx)
			return fmt.Errorf("fw4: reload with %s failed (taken out again): %w", p.fw4Path(), err)
		}
	}
	return nil
}

func (p *PortRule) reloadFW4(ctx context.Context) error {
	_, err := runCmd(ctx, "", p.r.fw4Reload[0], p.r.fw4Reload[1:]...)
	return err
}

// eachIPT runs f for iptables and, where the host has IPv6, ip6tables.
func (p *PortRule) eachIPT(f func(*iptablesFW, *iptables.IPTables, bool) error) error {
	fw, err := newIPTables(fwSpec{v6: p.r.ipv6()}, p.r.log)
	if err != nil {
		return err
	}
	var errs []error
	for _, fam := range fw.families() {
		errs = append(errs, f(fw, fam.ipt, fam.v6))
	}
	return errors.Join(errs...)
}

// Close removes what Open made with backend (whatever port it opened).
func (p *PortRule) Close(ctx context.Context, backend string) error {
	switch backend {
	case BackendIPTables:
		return p.eachIPT(func(_ *iptablesFW, ipt *iptables.IPTables, _ bool) error { return dropChain(ipt, p.ipChain()) })
	case BackendNFTables:
		// Declaring the table first makes the delete succeed when it is not there.
		t := p.table()
		if _, err := runCmd(ctx, "table inet "+t+"\ndelete table inet "+t+"\n", "nft", "-f", "-"); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
	case BackendFW4:
		err := os.Remove(p.fw4Path())
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			err = p.reloadFW4(ctx)
		}
		if err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
	}
	return nil
}

// InPlace reports whether the port is open with backend (none: always).
func (p *PortRule) InPlace(ctx context.Context, backend string) bool {
	want := fmt.Sprintf("udp dport %d accept", p.Port)
	switch backend {
	case BackendIPTables:
		return p.eachIPT(func(_ *iptablesFW, ipt *iptables.IPTables, _ bool) error {
			ok, err := chainInPlace(ipt, p.ipChain())
			if jump, jerr := ipt.Exists("filter", "INPUT", "-j", p.chain()); err != nil || jerr != nil || !ok || !jump {
				return errMissing
			}
			return nil
		}) == nil
	case BackendNFTables:
		live, err := liveRules(ctx, "inet", p.table())
		return err == nil && len(live["input"]) == 1 && live["input"][0] == want
	case BackendFW4:
		b, err := os.ReadFile(p.fw4Path())
		n, lerr := liveCount(ctx, "input", p.comment())
		return err == nil && string(b) == p.fw4Content() && lerr == nil && n == 1
	}
	return true
}

var errMissing = errors.New("missing")
