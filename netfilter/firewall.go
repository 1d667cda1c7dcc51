package netfilter

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Firewall backend names, as in subnet.firewall (plus what auto resolved to).
const (
	BackendIPTables = "iptables"
	BackendNFTables = "nftables"
	BackendFW4      = "fw4"
	BackendNone     = "none"
)

// firewall installs the forward/masquerade/MSS-clamp rules one way. Every method is
// idempotent and touches only what the agent owns (its chains, table or include files).
type firewall interface {
	name() string
	apply(ctx context.Context, st *state) error
	remove(ctx context.Context, st *state) error
	show(ctx context.Context) []Item
}

// fwSpec is what the firewall must let through, independent of the backend.
type fwSpec struct {
	ts   string   // tailscale interface
	lans []string // LAN interfaces
	snat bool     // masquerade tailnet sources into the LAN
	mss  bool     // clamp TCP MSS to the path MTU on the tailscale interface, both ways
	v6   bool     // the host has IPv6
}

// selectFirewall resolves subnet.firewall to a backend: auto picks fw4 when OpenWrt's fw4 is
// present (an iptables ACCEPT does not beat fw4's drop), else iptables when its binary works,
// else nftables directly.
func (r *Reconciler) selectFirewall(ctx context.Context) (firewall, error) {
	spec := fwSpec{
		ts:   r.cfg.TailscaleInterface,
		lans: r.cfg.LANInterfaces,
		snat: r.snat,
		mss:  r.mss,
		v6:   r.ipv6(),
	}
	switch r.cfg.Firewall {
	case BackendNone:
		return nil, nil
	case "auto", "":
		if _, err := exec.LookPath("fw4"); err == nil {
			return r.newBackend(BackendFW4, spec)
		}
		ipt, iptErr := r.newBackend(BackendIPTables, spec)
		if iptErr == nil {
			return ipt, nil
		}
		nft, nftErr := r.newBackend(BackendNFTables, spec)
		if nftErr == nil {
			return nft, nil
		}
		return nil, fmt.Errorf("subnet.firewall auto: no usable firewall (fw4 not found; %v; %v); install iptables or nftables, or set subnet.firewall: none", iptErr, nftErr)
	}
	fw, err := r.newBackend(r.cfg.Firewall, spec)
	if errors.Is(err, errUnknownBackend) {
		return nil, fmt.Errorf("subnet.firewall: unknown backend %q (expected auto, iptables, nftables, fw4 or none)", r.cfg.Firewall)
	}
	return fw, err
}

var errUnknownBackend = errors.New("unknown firewall backend")

// newBackend builds the named backend for spec.
func (r *Reconciler) newBackend(name string, spec fwSpec) (firewall, error) {
	switch name {
	case BackendIPTables:
		return newIPTables(spec, r.log)
	case BackendNFTables:
		return newNFTables(spec, r.log)
	case BackendFW4:
		return newFW4(spec, r.fw4Dir, r.fw4Reload, r.log)
	}
	return nil, errUnknownBackend
}

// backendByName builds a backend to remove what an earlier run installed with it.
func (r *Reconciler) backendByName(name string) (firewall, error) {
	fw, err := r.newBackend(name, fwSpec{ts: r.cfg.TailscaleInterface, lans: r.cfg.LANInterfaces, v6: r.ipv6()})
	if errors.Is(err, errUnknownBackend) {
		return nil, fmt.Errorf("unknown firewall backend %q in state", name)
	}
	return fw, err
}

// runCmd runs a program, returning its stdout and an error carrying its stderr.
func runCmd(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.String(), fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
		}
		return stdout.String(), fmt.Errorf("%s: %w", name, err)
	}
	return stdout.String(), nil
}
