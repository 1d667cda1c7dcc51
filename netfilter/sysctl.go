package netfilter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// sysctlWant is one kernel setting the subnet router needs.
type sysctlWant struct {
	path  string // under /proc/sys, slash-separated: interface names may contain dots (eth0.2)
	value string
	why   string
}

// wantSysctls lists the settings to make, in the order they must be made: accept_ra=2 before
// IPv6 forwarding (forwarding=1 makes the kernel ignore router advertisements on interfaces with
// accept_ra=1, and the box would lose its own SLAAC address), then forwarding, then rp_filter.
func (r *Reconciler) wantSysctls(st *state) []sysctlWant {
	recorded := map[string]string{}
	for _, rec := range st.Sysctls {
		recorded[rec.Path] = rec.Value
	}
	var out []sysctlWant
	ipv6 := r.sysctlExists("net/ipv6/conf/all/forwarding")
	if ipv6 {
		fwd, _ := r.readSysctl("net/ipv6/conf/all/forwarding")
		names, _ := os.ReadDir(filepath.Join(r.procSys, "net/ipv6/conf"))
		for _, e := range names {
			name := e.Name()
			if name == "all" || name == "default" || name == "lo" {
				continue
			}
			p := "net/ipv6/conf/" + name + "/accept_ra"
			if v, ok := recorded[p]; ok {
				out = append(out, sysctlWant{p, v, "keep SLAAC on " + name + " while forwarding"})
				continue
			}
			if fwd == "1" && !st.hasSysctl("net/ipv6/conf/all/forwarding") {
				continue // forwarding was already on (OpenWrt): RA handling is someone else's
			}
			if cur, err := r.readSysctl(p); err == nil && cur == "1" && r.takesSLAAC(name) {
				out = append(out, sysctlWant{p, "2", "keep SLAAC on " + name + " while forwarding"})
			}
		}
	}
	out = append(out, sysctlWant{"net/ipv4/ip_forward", "1", "forward IPv4 between tailnet and LAN"})
	if ipv6 {
		out = append(out, sysctlWant{"net/ipv6/conf/all/forwarding", "1", "forward IPv6 between tailnet and LAN"})
	}
	// Strict reverse-path filtering drops replies that arrive on another interface than the
	// route back would use, which policy routing to table 52 makes common; loose is safe.
	for _, ifc := range append([]string{"all", r.cfg.TailscaleInterface}, r.cfg.LANInterfaces...) {
		p := "net/ipv4/conf/" + ifc + "/rp_filter"
		if v, ok := recorded[p]; ok {
			out = append(out, sysctlWant{p, v, "loose reverse-path filter on " + ifc})
			continue
		}
		if cur, err := r.readSysctl(p); err == nil && cur == "1" {
			out = append(out, sysctlWant{p, "2", "loose reverse-path filter on " + ifc})
		}
	}
	return out
}

// takesSLAAC reports whether the interface has IPv6 addresses or a default route learned from
// router advertisements.
func (r *Reconciler) takesSLAAC(name string) bool {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return false
	}
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_V6)
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE && a.Flags&unix.IFA_F_PERMANENT == 0 {
			return true
		}
	}
	routes, _ := listRoutes(unix.AF_INET6)
	for _, rt := range routes {
		if rt.Table == unix.RT_TABLE_MAIN && rt.OIF == link.Attrs().Index && rt.Protocol == unix.RTPROT_RA {
			return true
		}
	}
	return false
}

func (r *Reconciler) sysctlFile(p string) string {
	return filepath.Join(r.procSys, filepath.FromSlash(p))
}

func (r *Reconciler) sysctlExists(p string) bool {
	_, err := os.Stat(r.sysctlFile(p))
	return err == nil
}

func (r *Reconciler) readSysctl(p string) (string, error) {
	b, err := os.ReadFile(r.sysctlFile(p))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (r *Reconciler) writeSysctl(p, v string) error {
	// /proc/sys files are written in place; they cannot be replaced by rename.
	if err := os.WriteFile(r.sysctlFile(p), []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", p, v, err)
	}
	return nil
}

// applySysctls makes every wanted setting, recording the original value in the state (saved
// before the write, so a crash cannot lose it).
func (r *Reconciler) applySysctls(st *state) error {
	var errs []error
	for _, w := range r.wantSysctls(st) {
		cur, err := r.readSysctl(w.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur == w.value {
			continue
		}
		if !st.hasSysctl(w.path) {
			st.Sysctls = append(st.Sysctls, sysctlRecord{Path: w.path, Original: cur, Value: w.value})
			if err := st.save(r.stateDir); err != nil {
				return err
			}
		}
		if err := r.writeSysctl(w.path, w.value); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("sysctl set", "key", w.path, "value", w.value, "was", cur, "why", w.why)
	}
	return errors.Join(errs...)
}

// removeSysctls restores recorded settings in reverse order, leaving alone any that someone
// else changed since (their value is no longer ours to undo).
func (r *Reconciler) removeSysctls(st *state) error {
	var errs []error
	var failed []sysctlRecord // kept in the state to retry
	for i := len(st.Sysctls) - 1; i >= 0; i-- {
		rec := st.Sysctls[i]
		cur, err := r.readSysctl(rec.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// the interface is gone, and its settings with it
		case err != nil:
			errs = append(errs, err)
			failed = append([]sysctlRecord{rec}, failed...)
		case cur != rec.Value:
			r.log.Warn("sysctl changed by someone else; leaving it", "key", rec.Path, "value", cur, "ours", rec.Value)
		default:
			if err := r.writeSysctl(rec.Path, rec.Original); err != nil {
				errs = append(errs, err)
				failed = append([]sysctlRecord{rec}, failed...)
				continue
			}
			r.log.Info("sysctl restored", "key", rec.Path, "value", rec.Original)
		}
	}
	st.Sysctls = failed
	return errors.Join(errs...)
}

func (st *state) hasSysctl(p string) bool {
	for _, rec := range st.Sysctls {
		if rec.Path == p {
			return true
		}
	}
	return false
}
