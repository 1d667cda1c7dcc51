package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/netfilter"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
)

const subnetUsage = "usage: edgerelay subnet apply|remove|show [-c FILE]"

// cmdSubnet is `edgerelay subnet apply|remove|show`: one reconcile of the subnet-router setup,
// for the OpenWrt firewall hotplug, package scripts and people checking what the agent owns.
func cmdSubnet(ctx context.Context, cfg *config.Config, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New(subnetUsage)
	}
	action := args[0]
	switch action {
	case "apply", "remove", "show":
	default:
		return fmt.Errorf("unknown subnet action %q; %s", action, subnetUsage)
	}
	sub := cfg.Subnet
	if sub == nil {
		if action != "remove" {
			return fmt.Errorf("the config (%s) has no subnet section", sourceName(cfg.Source))
		}
		// Removal still undoes what the state dir records (the section may have been deleted
		// since, and package removal must not fail over it).
		sub = &config.Subnet{}
	}
	log := newLogger(cfg.LogLevel, os.Stderr)
	r, err := netfilter.New(sub.Config, cfg.StateDir, log)
	if err != nil && action == "remove" {
		// A bad subnet section must not block the undo: the state dir names what to remove.
		log.Warn("subnet section unusable, removing by the state dir alone", "err", err)
		r, err = netfilter.New(netfilter.Config{}, cfg.StateDir, log)
	}
	if err != nil {
		return err
	}
	switch action {
	case "apply":
		if !config.On(sub.Enabled, true) {
			fmt.Fprintln(stdout, "subnet is disabled (subnet.enabled: false): removing what an earlier run set up")
			return r.Remove(ctx)
		}
		if err := r.Apply(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "subnet applied")
	case "remove":
		// Package removal runs this: the peer relay's changes go too (its prefs restored).
		if err := errors.Join(r.Remove(ctx), peerRelay(cfg, log).Remove(ctx)); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "subnet removed")
	case "show":
		rep, err := r.Show(ctx)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rep.String())
	}
	return nil
}

// peerRelay is the peer relay part of cfg, or, when its section is absent or unusable, one
// that still undoes and lists what the state dir records.
func peerRelay(cfg *config.Config, log *slog.Logger) *peerrelay.Relay {
	var pc peerrelay.Config
	if cfg.PeerRelay != nil {
		pc = cfg.PeerRelay.Config
	}
	pr, err := peerrelay.New(pc, cfg.StateDir, log)
	if err != nil {
		log.Warn("peer_relay section unusable, going by the state dir alone", "err", err)
		pr, _ = peerrelay.New(peerrelay.Config{}, cfg.StateDir, log)
	}
	return pr
}
