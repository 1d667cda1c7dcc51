package netfilter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// PortRule opens one UDP port of the box itself (a service it runs, such as tailscaled's
// peer relay) from every interface, with the same backends as the subnet rules: an iptables
// chain jumped to from INPUT, an nftables table of its own, or an fw4 include in fw4's input
// chain. Its name names the chain, table and file ("peer-relay").
type PortRule struct {
	Port    int
	r       *Reconciler // its fw4 paths, logger and firewall selection
	ipt     ipChain     // iptables: chain edgerelay-<name>, jumped to from INPUT
	table   string      // nftables: table inet edgerelay_<name>
	fw4File string      // fw4: the include in fw4's input chain
	fw4Rule string      // its content
	comment string      // the fw4 rule's comment, counted in fw4's live chain
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
	ps, comment := strconv.Itoa(port), `comment "edgerelay `+name+`"`
	return &PortRule{Port: port, r: r, comment: comment,
		ipt: ipChain{table: "filter", chain: "edgerelay-" + name, hook: "INPUT",
			rules: [][]string{strings.Fields("-p udp -m udp --dport " + ps + " -j ACCEPT")}},
		table:   "edgerelay_" + strings.ReplaceAll(name, "-", "_"),
		fw4File: filepath.Join(r.fw4Dir, "chain-pre", "input", "50-edgerelay-"+name+".nft"),
		fw4Rule: "# Written by edgerelay (" + name + "); removed when it is turned off and on package removal.\n" +
			"udp dport " + ps + " accept " + comment + "\n",
	}
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

// nft runs an nft script that first declares the table, so deleting it succeeds when it
// is not there; then adds what follows.
func (p *PortRule) nft(ctx context.Context, rest string) error {
	t := "table inet " + p.table + "\n"
	if _, err := runCmd(ctx, t+"delete "+t+rest, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// Open makes the port reachable with backend (resolved); none does nothing.
func (p *PortRule) Open(ctx context.Context, backend string) error {
	switch backend {
	case BackendIPTables:
		return p.iptables(true)
	case BackendNFTables:
		return p.nft(ctx, fmt.Sprintf("table inet %s {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport %d accept\n\t}\n}\n", p.table, p.Port))
	case BackendFW4:
		// One fixed rule with a number in it: nothing for nft -c to catch that the reload's
		// rollback would not.
		if err := os.MkdirAll(filepath.Dir(p.fw4File), 0o755); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := atomicfile.Write(p.fw4File, []byte(p.fw4Rule), 0o644); err != nil {
			return fmt.Errorf("fw4: %w", err)
		}
		if err := p.reloadFW4(ctx); err != nil {
			os.Remove(p.fw4File) // never leave the router with a ruleset that does not load
			p.reloadFW4(ctx)
			return fmt.Errorf("fw4: reload with %s failed (taken out again): %w", p.fw4File, err)
		}
	}
	return nil
}

// iptables adds (open) or removes the port's chain in every address family.
func (p *PortRule) iptables(open bool) error {
	fw, err := newIPTables(fwSpec{v6: p.r.ipv6()}, p.r.log)
	if err != nil {
		return err
	}
	var errs []error
	for _, fam := range fw.families() {
		if open {
			errs = append(errs, fw.ensureChain(fam.ipt, p.ipt, fam.v6))
		} else {
			errs = append(errs, dropChain(fam.ipt, p.ipt))
		}
	}
	return errors.Join(errs...)
}

func (p *PortRule) reloadFW4(ctx context.Context) error {
	_, err := runCmd(ctx, "", p.r.fw4Reload[0], p.r.fw4Reload[1:]...)
	return err
}

// Close removes what Open made with backend (whatever port it opened).
func (p *PortRule) Close(ctx context.Context, backend string) error {
	switch backend {
	case BackendIPTables:
		return p.iptables(false)
	case BackendNFTables:
		return p.nft(ctx, "")
	case BackendFW4:
		err := os.Remove(p.fw4File)
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
		fw, err := newIPTables(fwSpec{v6: p.r.ipv6()}, p.r.log)
		if err != nil {
			return false
		}
		for _, fam := range fw.families() {
			ok, err := chainInPlace(fam.ipt, p.ipt)
			if jump, jerr := fam.ipt.Exists("filter", "INPUT", "-j", p.ipt.chain); err != nil || jerr != nil || !ok || !jump {
				return false
			}
		}
	case BackendNFTables:
		live, err := liveRules(ctx, "inet", p.table)
		return err == nil && len(live["input"]) == 1 && live["input"][0] == want
	case BackendFW4:
		b, err := os.ReadFile(p.fw4File)
		n, lerr := liveCount(ctx, "input", p.comment)
		return err == nil && string(b) == p.fw4Rule && lerr == nil && n == 1
	}
	return true
}
