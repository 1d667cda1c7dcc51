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
	"strconv"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"github.com/edgerelay/edgerelay/agent/localapi"
)

// stateFile under the state dir records what the part changed, so that disabling it,
// `subnet remove` or package removal can put it back even after the config changed.
const stateFile = "peer-relay.json"

// relayPrefs are tailscaled's two peer relay prefs.
type relayPrefs struct {
	Port      *uint16          `json:"port"` // nil: peer relay off
	Endpoints []netip.AddrPort `json:"endpoints"`
}

func prefsOf(p *localapi.Prefs) relayPrefs {
	return relayPrefs{Port: p.RelayServerPort, Endpoints: p.RelayServerStaticEndpoints}
}

func (a *relayPrefs) equal(b *relayPrefs) bool {
	return (a.Port == nil) == (b.Port == nil) && (a.Port == nil || *a.Port == *b.Port) &&
		sameEndpoints(a.Endpoints, b.Endpoints)
}

// sameEndpoints compares as sets (the lists are short; tailscale's CLI sorts them, we
// keep the config's order): each of a in b and each of b in a.
func sameEndpoints(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !has(b, a[i]) || !has(a, b[i]) {
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
	Firewall string    `json:"firewall,omitempty"`
	_        [0]func() // not comparable: no generated equality function in the binary
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
		// Put back only what still is what the part set: prefs someone changed since are theirs.
		api := r.api
		if st.Socket != "" {
			api = localapi.New(st.Socket, "peer_relay.tailscaled_socket")
		}
		p, err := api.Prefs(ctx)
		have := prefsOf(&p)
		switch {
		case err != nil:
		case st.Set != nil && !have.equal(st.Set):
			r.log.Warn("peer relay prefs changed since edgerelay set them; leaving them as they are", "have", &have)
		default:
			_, err = api.EditPrefs(ctx, localapi.Edit{
				RelayServerPortSet: true, RelayServerPort: st.Prev.Port,
				RelayServerStaticEndpointsSet: true, RelayServerStaticEndpoints: st.Prev.Endpoints,
			})
			if err == nil {
				r.log.Info("tailscaled's peer relay prefs restored", "to", st.Prev)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("peer relay: restore tailscaled's prefs: %w", err))
		} else {
			st.Prev, st.Set = nil, nil
		}
	}
	errs = append(errs, st.save(r.stateDir))
	return errors.Join(errs...)
}

func has(l []netip.AddrPort, ap netip.AddrPort) bool {
	for _, x := range l {
		if x == ap {
			return true
		}
	}
	return false
}

func (a *relayPrefs) String() string {
	port := "off"
	if a.Port != nil {
		port = strconv.Itoa(int(*a.Port))
	}
	return "port " + port + ", static endpoints " + fmt.Sprint(a.Endpoints)
}
