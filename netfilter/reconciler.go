package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Reconciler makes the system match a subnet config: sysctls, ip rules towards table 52,
// firewall rules and advertised routes. Every method is idempotent; what it changed is
// recorded in the state dir so Remove can undo it.
type Reconciler struct {
	cfg       Config
	snat, mss bool
	advertise bool
	stateDir  string
	log       *slog.Logger
	procSys   string
	fw4Dir    string
	fw4Reload []string
	reports   func(Report, error)

	mu sync.Mutex // one reconcile at a time (Run's loop and a concurrent Apply/Remove)
}

// Option adjusts a Reconciler.
type Option func(*Reconciler)

// WithFW4 sets where fw4 include files go (default /usr/share/nftables.d) and the command
// that makes fw4 rebuild its ruleset (default `fw4 -q reload`).
func WithFW4(includeDir string, reload ...string) Option {
	return func(r *Reconciler) {
		if includeDir != "" {
			r.fw4Dir = includeDir
		}
		if len(reload) > 0 {
			r.fw4Reload = reload
		}
	}
}

// New checks the config section (errors name the keys under subnet) and returns a
// Reconciler for it. Nothing is changed yet.
func New(cfg Config, stateDir string, log *slog.Logger, opts ...Option) (*Reconciler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The loaded config has its defaults; fill them again for callers building one by hand.
	cfg.SetDefaults()
	if stateDir == "" {
		return nil, errors.New("netfilter: no state dir (state_dir)")
	}
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("subnet", err)
		return nil, ps
	}
	r := &Reconciler{
		cfg:       cfg,
		snat:      field.On(cfg.SNAT, true),
		mss:       field.On(cfg.MSSClamp, true),
		advertise: field.On(cfg.Advertise, true),
		stateDir:  stateDir,
		log:       log.With("component", "netfilter"),
		procSys:   "/proc/sys",
		fw4Dir:    "/usr/share/nftables.d",
		fw4Reload: []string{"fw4", "-q", "reload"},
	}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// needAdmin returns a clear error when the process cannot change network settings.
func needAdmin() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; let the operations themselves fail
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil && caps&(1<<12) == 0 { // CAP_NET_ADMIN
				return fmt.Errorf("netfilter: needs root (or CAP_NET_ADMIN) to change forwarding, ip rules and the firewall; running as uid %d without it", os.Geteuid())
			}
		}
	}
	return nil
}

// Apply makes the system match the config. Each step runs even if an earlier one failed, so
// one problem (say, tailscaled not running) does not hold back the others.
func (r *Reconciler) Apply(ctx context.Context) error {
	return r.withState(true, func(st *state) error { return r.apply(ctx, st) })
}

// withState runs fn as root with the reconciler and the state dir locked (the daemon's loop
// and a hotplug `subnet apply` may race) and the recorded state loaded; create makes a
// missing state dir.
func (r *Reconciler) withState(create bool, fn func(st *state) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := needAdmin(); err != nil {
		return err
	}
	unlock, err := lockState(r.stateDir, create)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(r.stateDir)
	if err != nil {
		return err
	}
	return fn(st)
}

func (r *Reconciler) apply(ctx context.Context, st *state) error {
	var errs []error
	if err := r.applySysctls(st); err != nil {
		errs = append(errs, err)
	}
	if err := r.applyRules(st); err != nil {
		errs = append(errs, err)
	}
	if err := r.applyFirewall(ctx, st); err != nil {
		errs = append(errs, err)
	}
	if err := st.save(r.stateDir); err != nil {
		errs = append(errs, err)
	}
	if r.advertise {
		if err := r.applyAdvertise(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("advertise: %w", err))
		}
	} else if err := r.removeAdvertise(ctx, st); err != nil {
		errs = append(errs, fmt.Errorf("withdraw routes (subnet.advertise is off): %w", err))
	}
	if err := st.save(r.stateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Reconciler) applyFirewall(ctx context.Context, st *state) error {
	fw, err := r.selectFirewall(ctx)
	if err != nil {
		return err
	}
	var errs []error
	// A backend used before but no longer selected (config changed) gives its rules up first.
	for _, old := range append([]string(nil), st.Firewalls...) {
		if fw != nil && old == fw.name() {
			continue
		}
		ob, err := r.backendByName(old)
		if err == nil {
			err = ob.remove(ctx, st)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s rules of an earlier run: %w", old, err))
		}
	}
	if fw != nil {
		if err := fw.apply(ctx, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove undoes everything the agent owns: routes it advertised, firewall rules, ip rules,
// and sysctls (restored to their recorded values).
func (r *Reconciler) Remove(ctx context.Context) error {
	return r.withState(false, func(st *state) error { return r.remove(ctx, st) })
}

func (r *Reconciler) remove(ctx context.Context, st *state) error {
	var errs []error
	if err := r.removeAdvertise(ctx, st); err != nil {
		errs = append(errs, fmt.Errorf("withdraw routes: %w", err))
	}
	// Also the configured backend, in case the state was lost: removal by name is harmless.
	names := append([]string(nil), st.Firewalls...)
	if fw, err := r.selectFirewall(ctx); err == nil && fw != nil && !containsStr(names, fw.name()) {
		names = append(names, fw.name())
	}
	for _, name := range names {
		fw, err := r.backendByName(name)
		if err == nil {
			err = fw.remove(ctx, st)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if st.RulePriority == 0 {
		st.RulePriority = r.cfg.RulePriority
	}
	if err := r.removeRules(st); err != nil {
		errs = append(errs, err)
	}
	if err := r.removeSysctls(st); err != nil {
		errs = append(errs, err)
	}
	if err := st.save(r.stateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Report lists what the agent owns and whether each item is in place.
type Report struct {
	Firewall string // the backend in use ("none" when off)
	Items    []Item
}

// Item is one thing the agent owns: a sysctl, an ip rule, a firewall chain or file, a route.
type Item struct {
	Kind    string // sysctl | rule | firewall | route
	Name    string
	Want    string
	Have    string
	InPlace bool
}

// InPlace reports whether every item is in place.
func (rep Report) InPlace() bool {
	for _, it := range rep.Items {
		if !it.InPlace {
			return false
		}
	}
	return true
}

// String renders the report one item per line, "ok" or "MISSING" first.
func (rep Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "firewall backend: %s\n", rep.Firewall)
	for _, it := range rep.Items {
		mark := "ok     "
		if !it.InPlace {
			mark = "MISSING"
		}
		fmt.Fprintf(&b, "%s %-8s %s: want %s, have %s\n", mark, it.Kind, it.Name, it.Want, it.Have)
	}
	return b.String()
}

// Show reports exactly what the agent owns and whether each item is in place.
func (r *Reconciler) Show(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := loadState(r.stateDir)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, w := range r.wantSysctls(st) {
		it := Item{Kind: "sysctl", Name: w.path, Want: w.value}
		cur, err := r.readSysctl(w.path)
		if err != nil {
			it.Have = "unreadable"
		} else {
			it.Have, it.InPlace = cur, cur == w.value
		}
		for _, rec := range st.Sysctls {
			if rec.Path == w.path {
				it.Want += " (was " + rec.Original + ")"
			}
		}
		rep.Items = append(rep.Items, it)
	}
	have, rerr := r.ownRules(r.cfg.RulePriority)
	for _, p := range r.wantRules() {
		it := Item{Kind: "rule", Name: fmt.Sprintf("ip rule pref %d to %s fwmark 0/%#x lookup %d", r.cfg.RulePriority, p, bypassMark, tailscaleTable), Want: "present"}
		it.Have = "missing"
		if rerr != nil {
			it.Have = "unknown: " + rerr.Error()
		}
		for _, h := range have {
			if q, ok := prefixOf(h.Dst); ok && q == p && isOurShape(h) {
				it.Have, it.InPlace = "present", true
			}
		}
		rep.Items = append(rep.Items, it)
	}
	rep.Firewall = BackendNone
	fw, err := r.selectFirewall(ctx)
	if err != nil {
		rep.Firewall = "unavailable"
		rep.Items = append(rep.Items, Item{Kind: "firewall", Name: "subnet.firewall " + r.cfg.Firewall, Want: "usable", Have: err.Error()})
	} else if fw != nil {
		rep.Firewall = fw.name()
		rep.Items = append(rep.Items, fw.show(ctx)...)
	}
	if r.advertise {
		rep.Items = append(rep.Items, r.showAdvertise(ctx, st)...)
	}
	return rep, nil
}
