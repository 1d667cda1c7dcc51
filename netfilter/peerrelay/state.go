package peerrelay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"github.com/edgerelay/edgerelay/agent/localapi"
	"github.com/edgerelay/edgerelay/netfilter"
)

// stateFile under the state dir records what the part changed, so that disabling it,
// `subnet remove` or package removal can put it back even after the config changed.
const stateFile = "peer-relay.json"

// relayPrefs are tailscaled's two peer relay prefs.
type relayPrefs struct {
	Port      *uint16          `json:"port"` // nil: peer relay off
	Endpoints []netip.AddrPort `json:"endpoints"`
}

func prefsOf(p localapi.Prefs) relayPrefs {
	return relayPrefs{Port: p.RelayServerPort, Endpoints: p.RelayServerStaticEndpoints}
}

func (a relayPrefs) equal(b relayPrefs) bool {
	return (a.Port == nil) == (b.Port == nil) && (a.Port == nil || *a.Port == *b.Port) &&
		sameEndpoints(a.Endpoints, b.Endpoints)
}

// sameEndpoints compares as sets (the lists are short; tailscale's CLI sorts them, we
// keep the config's order).
func sameEndpoints(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for _, ap := range a {
		if !slices.Contains(b, ap) {
			return false
		}
	}
	return true
}

// state is what the part changed.
type state struct {
	Socket string      `json:"tailscaled_socket,omitempty"` // the socket the prefs were changed through
	Prev   *relayPrefs `json:"previous,omitempty"`          // tailscaled's prefs before the first change
	Set    *relayPrefs `json:"set,omitempty"`               // what the part set last
	// Firewall is the backend the port was opened with ("": none opened).
	Firewall string `json:"firewall,omitempty"`
}

func loadState(dir string) (*state, error) {
	st := &state{}
	p := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err == nil {
		err = json.Unmarshal(b, st)
	}
	if err != nil {
		return nil, fmt.Errorf("peer relay state %s: %w", p, err)
	}
	return st, nil
}

// save writes the state (0600 in a 0700 dir); a state with nothing to undo is no file.
func (st *state) save(dir string) error {
	p := filepath.Join(dir, stateFile)
	if st.Prev == nil && st.Firewall == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("peer relay state: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("peer relay state: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(p, append(b, '\n'), 0o600)
}

// Remove undoes what an earlier run recorded in the state dir: tailscaled's peer relay
// prefs go back to what they were before (each one only if it still holds what the part
// set: a value someone chose since is theirs), and the firewall port is closed. What could
// not be undone stays recorded for the next try.
func (r *Relay) Remove(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := loadState(r.stateDir)
	if err != nil {
		return err
	}
	var errs []error
	if st.Firewall != "" {
		if err := r.fw.Close(ctx, st.Firewall); err != nil {
			errs = append(errs, fmt.Errorf("peer relay: close udp port: %w", err))
		} else {
			st.Firewall = ""
		}
	}
	if st.Prev != nil {
		if err := r.restore(ctx, st); err != nil {
			errs = append(errs, err)
		} else {
			st.Prev, st.Set = nil, nil
		}
	}
	errs = append(errs, st.save(r.stateDir))
	return errors.Join(errs...)
}

func (r *Relay) restore(ctx context.Context, st *state) error {
	api := r.api
	if st.Socket != "" {
		api = localapi.New(st.Socket)
	}
	p, err := api.Prefs(ctx)
	if err != nil {
		return fmt.Errorf("peer relay: restore tailscaled's prefs: %w", err)
	}
	have := prefsOf(p)
	set := relayPrefs{}
	if st.Set != nil {
		set = *st.Set
	}
	var e localapi.Edit
	if (relayPrefs{Port: have.Port}).equal(relayPrefs{Port: set.Port}) {
		e.RelayServerPortSet, e.RelayServerPort = true, st.Prev.Port
	}
	if (relayPrefs{Endpoints: have.Endpoints}).equal(relayPrefs{Endpoints: set.Endpoints}) {
		e.RelayServerStaticEndpointsSet, e.RelayServerStaticEndpoints = true, st.Prev.Endpoints
	}
	if !e.RelayServerPortSet || !e.RelayServerStaticEndpointsSet {
		r.log.Warn("peer relay prefs changed since edgerelay set them; leaving the changed ones as they are",
			"port", portString(have.Port), "endpoints", endpointStrings(have.Endpoints))
	}
	if e.RelayServerPortSet || e.RelayServerStaticEndpointsSet {
		if _, err := api.EditPrefs(ctx, e); err != nil {
			return fmt.Errorf("peer relay: restore tailscaled's prefs: %w", err)
		}
		r.log.Info("tailscaled's peer relay prefs restored", "port", portString(st.Prev.Port), "endpoints", endpointStrings(st.Prev.Endpoints))
	}
	return nil
}

// Show lists what the part owns on the system now, for `subnet show`.
func (r *Relay) Show(ctx context.Context) []netfilter.Item {
	st, err := loadState(r.stateDir)
	if err != nil {
		return []netfilter.Item{{Kind: "peer-relay", Name: "state", Want: "readable", Have: err.Error()}}
	}
	var items []netfilter.Item
	if st.Set != nil {
		it := netfilter.Item{Kind: "peer-relay", Name: "tailscaled prefs", Want: describe(*st.Set)}
		if p, err := r.api.Prefs(ctx); err != nil {
			it.Have = "unknown: " + err.Error()
		} else {
			it.Have, it.InPlace = describe(prefsOf(p)), prefsOf(p).equal(*st.Set)
		}
		items = append(items, it)
	}
	if st.Firewall != "" {
		ok, have := r.fw.InPlace(ctx, st.Firewall)
		items = append(items, netfilter.Item{Kind: "peer-relay", Name: "udp port", Want: "open (" + st.Firewall + ")", Have: have, InPlace: ok})
	}
	return items
}

func describe(p relayPrefs) string {
	return fmt.Sprintf("port %s, static endpoints %v", portString(p.Port), endpointStrings(p.Endpoints))
}
