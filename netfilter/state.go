package netfilter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"golang.org/x/sys/unix"
)

// stateFile is the file under the state dir that records what the agent changed, so that
// `subnet remove` can undo it even after the config changed.
const stateFile = "netfilter.json"

// state is what the agent owns on the system beyond what it can find by name.
type state struct {
	// Sysctls changed by the agent, in the order they were changed, with their original values.
	Sysctls []sysctlRecord `json:"sysctls,omitempty"`
	// RulePriority of the ip rules the agent added (0: none).
	RulePriority int `json:"rule_priority,omitempty"`
	// Firewall backends the agent installed rules with (iptables, nftables, fw4).
	Firewalls []string `json:"firewalls,omitempty"`
	// FW4Files are the nft include files written for fw4, and the reload command to run after removal.
	FW4Files []string `json:"fw4_files,omitempty"`
	// Advertised routes the agent added to tailscaled's AdvertiseRoutes, and the socket it used.
	Advertised       []string `json:"advertised,omitempty"`
	TailscaledSocket string   `json:"tailscaled_socket,omitempty"`
	// Approved routes the agent approved on headscale for this node.
	Approved []string `json:"approved,omitempty"`
}

type sysctlRecord struct {
	Path     string `json:"path"`     // under /proc/sys, e.g. net/ipv6/conf/eth0.2/accept_ra
	Original string `json:"original"` // value before the agent changed it
	Value    string `json:"value"`    // value the agent set
}

func loadState(dir string) (*state, error) {
	st := &state{}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read netfilter state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parse netfilter state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// empty reports whether the state records nothing to undo (the socket only qualifies routes).
func (st *state) empty() bool {
	return len(st.Sysctls) == 0 && st.RulePriority == 0 && len(st.Firewalls) == 0 && len(st.FW4Files) == 0 &&
		len(st.Advertised) == 0 && len(st.Approved) == 0
}

// save writes the state atomically (temp file + rename), 0600 in a 0700 dir. A state with
// nothing to undo is no file at all, so a `subnet remove` where subnet never ran (package
// removal) leaves the state dir as it found it.
func (st *state) save(dir string) error {
	if st.empty() {
		if err := os.Remove(filepath.Join(dir, stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove netfilter state: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), append(b, '\n'), 0o600)
}

func (st *state) addFirewall(name string) {
	if !slices.Contains(st.Firewalls, name) {
		st.Firewalls = append(st.Firewalls, name)
	}
}

func (st *state) dropFirewall(name string) {
	st.Firewalls = slices.DeleteFunc(st.Firewalls, func(s string) bool { return s == name })
}

// lockState takes an exclusive lock on the state dir itself (no lock file), so the daemon's
// loop and a concurrent `edgerelay subnet apply` (firewall hotplug) do not interleave their
// changes. With create unset a missing dir is not made: it records nothing to lock.
func lockState(dir string, create bool) (unlock func(), err error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
	}
	f, err := os.Open(dir)
	if !create && errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock netfilter state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock netfilter state: %w", err)
	}
	return func() { f.Close() }, nil
}
