package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"

	"github.com/coreos/go-iptables/iptables"
)

// The agent's own iptables chains; tailscaled's ts-* chains are never touched.
const (
	chainForward = "edgerelay-forward"     // filter, jumped to from FORWARD
	chainNAT     = "edgerelay-postrouting" // nat, jumped to from POSTROUTING
	chainMSS     = "edgerelay-mss"         // mangle, jumped to from FORWARD
)

// iptablesFW installs the rules with iptables and ip6tables (legacy or nft backend alike).
type iptablesFW struct {
	spec fwSpec
	v4   *iptables.IPTables
	v6   *iptables.IPTables // nil when the host has no IPv6 or no ip6tables
	log  *slog.Logger
}

// ipChain is one chain of ours: where it lives, where it is jumped to from, and its rules.
type ipChain struct {
	table, chain, hook string
	rules              [][]string
}

func newIPTables(spec fwSpec, log *slog.Logger) (*iptablesFW, error) {
	v4, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(10))
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errors.New("subnet.firewall iptables: the iptables program is not installed (install iptables-nft, or use subnet.firewall: fw4/nftables/none)")
		}
		return nil, fmt.Errorf("subnet.firewall iptables: %w", err)
	}
	// Usable means the kernel side works too, not just that the binary exists.
	if _, err := v4.ListChains("filter"); err != nil {
		return nil, fmt.Errorf("subnet.firewall iptables: iptables does not work here: %w", err)
	}
	f := &iptablesFW{spec: spec, v4: v4, log: log}
	if spec.v6 {
		v6, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv6), iptables.Timeout(10))
		if err != nil {
			log.Warn("ip6tables unavailable; IPv6 forwarding rules skipped", "err", err)
		} else {
			f.v6 = v6
		}
	}
	return f, nil
}

func (f *iptablesFW) name() string { return BackendIPTables }

// chains returns our chains for one family with the rules they should hold; chains for
// disabled features come back with nil rules (they must not exist).
func (f *iptablesFW) chains(v6 bool) []ipChain {
	s := f.spec
	fwd := ipChain{table: "filter", chain: chainForward, hook: "FORWARD"}
	nat := ipChain{table: "nat", chain: chainNAT, hook: "POSTROUTING"}
	mss := ipChain{table: "mangle", chain: chainMSS, hook: "FORWARD"}
	src := tailnetV4.String()
	if v6 {
		src = tailnetV6.String()
	}
	for _, lan := range s.lans {
		fwd.rules = append(fwd.rules,
			[]string{"-i", s.ts, "-o", lan, "-j", "ACCEPT"},
			[]string{"-i", lan, "-o", s.ts, "-j", "ACCEPT"})
		if s.snat {
			nat.rules = append(nat.rules, []string{"-s", src, "-o", lan, "-j", "MASQUERADE"})
		}
	}
	if s.mss {
		for _, dir := range []string{"-o", "-i"} {
			mss.rules = append(mss.rules, []string{dir, s.ts, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"})
		}
	}
	return []ipChain{fwd, nat, mss}
}

func (f *iptablesFW) families() []struct {
	ipt *iptables.IPTables
	v6  bool
} {
	out := []struct {
		ipt *iptables.IPTables
		v6  bool
	}{{f.v4, false}}
	if f.v6 != nil {
		out = append(out, struct {
			ipt *iptables.IPTables
			v6  bool
		}{f.v6, true})
	}
	return out
}

func famName(v6 bool) string {
	if v6 {
		return "ip6tables"
	}
	return "iptables"
}

func (f *iptablesFW) apply(ctx context.Context, st *state) error {
	st.addFirewall(BackendIPTables)
	var errs []error
	for _, fam := range f.families() {
		for _, c := range f.chains(fam.v6) {
			var err error
			if c.rules == nil {
				err = dropChain(fam.ipt, c)
			} else {
				err = f.ensureChain(fam.ipt, c, fam.v6)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s %s: %w", famName(fam.v6), c.table, c.chain, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ensureChain makes the chain hold exactly its rules, and the hook jump to it once.
func (f *iptablesFW) ensureChain(ipt *iptables.IPTables, c ipChain, v6 bool) error {
	ok, err := chainInPlace(ipt, c)
	if err != nil {
		return err
	}
	if !ok {
		if err := ipt.ClearChain(c.table, c.chain); err != nil { // creates it when missing
			return err
		}
		for _, rule := range c.rules {
			if err := ipt.Append(c.table, c.chain, rule...); err != nil {
				return err
			}
		}
		f.log.Info("firewall chain written", "backend", famName(v6), "table", c.table, "chain", c.chain, "rules", len(c.rules))
	}
	jump := []string{"-j", c.chain}
	exists, err := ipt.Exists(c.table, c.hook, jump...)
	if err != nil {
		return err
	}
	if !exists {
		// First in the hook, so a later DROP/REJECT in the distribution's rules cannot win.
		if err := ipt.Insert(c.table, c.hook, 1, jump...); err != nil {
			return err
		}
		f.log.Info("firewall jump added", "backend", famName(v6), "table", c.table, "from", c.hook, "to", c.chain)
	}
	return nil
}

// chainInPlace reports whether the chain exists holding exactly the wanted rules.
func chainInPlace(ipt *iptables.IPTables, c ipChain) (bool, error) {
	exists, err := ipt.ChainExists(c.table, c.chain)
	if err != nil || !exists {
		return false, err
	}
	have, err := ipt.List(c.table, c.chain)
	if err != nil {
		return false, err
	}
	if len(have)-1 != len(c.rules) { // the first line is "-N chain"
		return false, nil
	}
	for _, rule := range c.rules {
		ok, err := ipt.Exists(c.table, c.chain, rule...)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// dropChain removes every jump to the chain from its hook, then the chain.
func dropChain(ipt *iptables.IPTables, c ipChain) error {
	exists, err := ipt.ChainExists(c.table, c.chain)
	if err != nil {
		var ie *iptables.Error
		if errors.As(err, &ie) && ie.IsNotExist() {
			return nil // the table itself is missing (no nat module): nothing of ours there
		}
		return err
	}
	for {
		ok, err := ipt.Exists(c.table, c.hook, "-j", c.chain)
		if err != nil || !ok {
			break
		}
		if err := ipt.Delete(c.table, c.hook, "-j", c.chain); err != nil {
			return err
		}
	}
	if !exists {
		return nil
	}
	return ipt.ClearAndDeleteChain(c.table, c.chain)
}

func (f *iptablesFW) remove(ctx context.Context, st *state) error {
	var errs []error
	for _, fam := range f.families() {
		for _, c := range f.chains(fam.v6) {
			if err := dropChain(fam.ipt, c); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s %s: %w", famName(fam.v6), c.table, c.chain, err))
			} else {
				f.log.Debug("firewall chain removed", "backend", famName(fam.v6), "table", c.table, "chain", c.chain)
			}
		}
	}
	if len(errs) == 0 {
		st.dropFirewall(BackendIPTables)
	}
	return errors.Join(errs...)
}

func (f *iptablesFW) show(ctx context.Context) []Item {
	var items []Item
	for _, fam := range f.families() {
		for _, c := range f.chains(fam.v6) {
			want := fmt.Sprintf("%d rules, jumped to from %s", len(c.rules), c.hook)
			if c.rules == nil {
				want = "absent"
			}
			it := Item{Kind: "firewall", Name: fmt.Sprintf("%s -t %s %s", famName(fam.v6), c.table, c.chain), Want: want}
			exists, err := fam.ipt.ChainExists(c.table, c.chain)
			jump, jerr := fam.ipt.Exists(c.table, c.hook, "-j", c.chain)
			switch {
			case c.rules == nil:
				it.InPlace = err == nil && !exists && (jerr != nil || !jump)
				it.Have = "absent"
				if exists {
					it.Have = "present"
				}
			case err != nil:
				it.Have = "error: " + err.Error()
			case !exists:
				it.Have = "missing"
			default:
				ok, err := chainInPlace(fam.ipt, c)
				have, _ := fam.ipt.List(c.table, c.chain)
				it.Have = fmt.Sprintf("%d rules", max(len(have)-1, 0))
				if jerr == nil && jump {
					it.Have += ", jumped to from " + c.hook
				} else {
					it.Have += ", no jump from " + c.hook
				}
				it.InPlace = err == nil && ok && jerr == nil && jump
			}
			items = append(items, it)
		}
	}
	return items
}
