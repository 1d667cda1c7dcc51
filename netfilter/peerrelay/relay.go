package peerrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/agent/localapi"
	"github.com/edgerelay/edgerelay/netfilter"
)

// Timing: kicks come in bursts (an address change, our own prefs edit echoed on the IPN
// bus), so wait a moment before applying; failures retry with backoff; a slow resync
// catches a firewall flushed behind our back and refreshes the session count.
const (
	settle       = 300 * time.Millisecond
	resyncEvery  = time.Minute
	retryInitial = 5 * time.Second
	retryMax     = 5 * time.Minute
)

// Relay keeps tailscaled a peer relay as configured. Every method is safe to call while
// Run runs.
type Relay struct {
	cfg      Config
	stateDir string
	log      *slog.Logger
	api      *localapi.Client
	fw       *netfilter.PortRule
	kick     chan struct{}

	// Reports, when set before Run, hears the Status after every apply and whenever
	// tailscaled comes or goes; it must return quickly.
	Reports func(Status)

	mu     sync.Mutex   // one apply or remove at a time
	public []netip.Addr // the line's public addresses (SetPublic)
	status Status
}

// Status is what the part last saw, for `edgerelay status` and LuCI.
type Status struct {
	Port       int              `json:"port"`
	Endpoints  []netip.AddrPort `json:"endpoints"`            // the static endpoints in force
	InPrefs    bool             `json:"in_prefs"`             // tailscaled's prefs hold the port and endpoints
	Tailscaled string           `json:"tailscaled,omitempty"` // its version
	Firewall   string           `json:"firewall"`             // the backend that opens the port (none: you do)
	PortOpen   bool             `json:"port_open"`            // its rule is in place
	Sessions   int              `json:"sessions"`             // relay sessions through this box now (-1: unknown)
	Reasserted int              `json:"reasserted"`           // times the prefs were put back after another tool changed them
	Error      string           `json:"error,omitempty"`
	Checked    time.Time        `json:"checked,omitzero"`
}

// New checks the section (errors name keys under peer_relay) and returns the part; opts
// take netfilter.WithFW4 for the port's fw4 include. Nothing is changed yet.
func New(cfg Config, stateDir string, log *slog.Logger, opts ...netfilter.Option) (*Relay, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	if stateDir == "" {
		return nil, errors.New("peer relay: no state dir (state_dir)")
	}
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("peer_relay", err)
		return nil, ps
	}
	log = log.With("component", "peer_relay")
	r := &Relay{cfg: cfg, stateDir: stateDir, log: log, api: localapi.New(cfg.TailscaledSocket, "peer_relay.tailscaled_socket"), kick: make(chan struct{}, 1)}
	r.fw = netfilter.NewPortRule("peer-relay", cfg.Port, log, opts...)
	r.status = Status{Port: cfg.Port, Firewall: cfg.Firewall, Sessions: -1}
	return r, nil
}

// SetPublic gives the line's current public addresses (for static_endpoints: auto); a
// change is applied at once by Run.
func (r *Relay) SetPublic(addrs []netip.Addr) {
	r.mu.Lock()
	changed := len(addrs) != len(r.public)
	for i := 0; !changed && i < len(addrs); i++ {
		changed = addrs[i] != r.public[i]
	}
	r.public = addrs
	r.mu.Unlock()
	if changed {
		select { // have Run apply soon
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// wantLocked is the prefs the config asks for with the addresses known now.
func (r *Relay) wantLocked() relayPrefs {
	port := uint16(r.cfg.Port)
	return relayPrefs{Port: &port, Endpoints: r.cfg.endpoints(r.public)}
}

// Run applies the config, then follows tailscaled's IPN bus and puts the prefs back
// whenever they stop matching (another tool cleared them, tailscaled restarted with other
// prefs), and re-applies on address changes, until ctx ends. It leaves everything in place
// on return: the relay must survive an agent restart (Remove undoes it).
func (r *Relay) Run(ctx context.Context) error {
	backend, err := r.fw.Resolve(ctx, r.cfg.Firewall)
	if err != nil {
		return fmt.Errorf("peer_relay.firewall: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		r.api.FollowPrefs(ctx, r.onBus)
		close(followed)
	}()

	timer := time.NewTimer(0)
	retry := retryInitial
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-r.kick:
			timer.Reset(settle)
		case <-timer.C:
			err := r.Apply(ctx, backend)
			if ctx.Err() != nil {
				break
			}
			r.publish(ctx, backend, err)
			if err != nil {
				r.log.Error("peer relay apply failed; will retry", "err", err, "retry_in", retry)
				timer.Reset(retry)
				retry = min(retry*2, retryMax)
				continue
			}
			retry = retryInitial
			timer.Reset(resyncEvery)
		}
	}
	timer.Stop()
	cancel()
	<-followed
	return nil
}

// onBus hears each prefs change on the IPN bus (and the current prefs on each new watch),
// or why the watch ended (FollowPrefs watches again after a backoff, starting with the
// current prefs, so a restarted tailscaled is checked by itself).
func (r *Relay) onBus(p localapi.Prefs, err error) {
	r.mu.Lock()
	if err == nil {
		have, want := prefsOf(&p), r.wantLocked()
		ok := have.equal(&want) && r.status.Error == ""
		r.mu.Unlock()
		if !ok { // changed, or tailscaled is back after an error: check and report
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	first := r.status.Error != err.Error()
	r.status.Error, r.status.InPrefs = err.Error(), false
	st := r.status
	r.mu.Unlock()
	if first {
		r.log.Warn("lost tailscaled's IPN bus; watching again", "err", err)
	}
	if r.Reports != nil {
		r.Reports(st)
	}
}

// Apply sets the peer relay prefs on tailscaled (recording what they were before the first
// change) and opens the UDP port with backend.
func (r *Relay) Apply(ctx context.Context, backend string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := loadState(r.stateDir)
	if err != nil {
		return err
	}
	want := r.wantLocked()
	p, err := r.api.Prefs(ctx)
	if err != nil {
		return err
	}
	if have := prefsOf(&p); !have.equal(&want) {
		if st.Prev == nil {
			st.Prev, st.Socket = &have, r.api.Socket()
		}
		// Recorded before the edit, so a crash after it still leaves something to undo.
		st.Set = &want
		if err := st.save(r.stateDir); err != nil {
			return err
		}
		p, err := r.api.EditPrefs(ctx, localapi.Edit{
			RelayServerPortSet: true, RelayServerPort: want.Port,
			RelayServerStaticEndpointsSet: true, RelayServerStaticEndpoints: want.Endpoints,
		})
		if err != nil {
			return err
		}
		if got := prefsOf(&p); !got.equal(&want) {
			// tailscaled ignores prefs it does not know (status names its version).
			return fmt.Errorf("tailscaled at %s did not take the peer relay prefs (it has %v): "+
				"peer relays need tailscaled 1.86 or newer (OpenWrt 24.10 ships 1.80), static endpoints 1.92 (or set peer_relay.static_endpoints: none)",
				r.api.Where(), &got)
		}
		if r.status.InPrefs {
			r.status.Reasserted++ // they were in place and something changed them
		}
		r.log.Info("peer relay prefs set on tailscaled", "now", &want, "had", &have)
	}
	r.status.InPrefs = true
	if st.Firewall != "" && st.Firewall != backend {
		if err := r.fw.Close(ctx, st.Firewall); err != nil {
			return fmt.Errorf("peer relay: close the udp port in %s: %w", st.Firewall, err)
		}
		st.Firewall = ""
	}
	if backend != netfilter.BackendNone && !r.fw.InPlace(ctx, backend) {
		st.Firewall = backend // recorded first: a half-open port is removed too
		if err := st.save(r.stateDir); err != nil {
			return err
		}
		if err := r.fw.Open(ctx, backend); err != nil {
			return fmt.Errorf("peer relay: open udp port %d: %w", r.cfg.Port, err)
		}
		r.log.Info("udp port opened", "port", r.cfg.Port, "firewall", backend)
	}
	return st.save(r.stateDir)
}

// publish updates the status after an apply: the prefs, the port, the sessions.
func (r *Relay) publish(ctx context.Context, backend string, applyErr error) {
	var srv struct{ Sessions []struct{} }
	sessions := -1
	if _, err := r.api.Do(ctx, "GET", "/localapi/v0/debug-peer-relay-sessions", nil, &srv); err == nil {
		sessions = len(srv.Sessions)
	}
	ts, _ := r.api.Status(ctx)
	open := r.fw.InPlace(ctx, backend)
	r.mu.Lock()
	s := &r.status
	s.Endpoints, s.Tailscaled, s.Sessions, s.Firewall, s.PortOpen, s.Checked = r.wantLocked().Endpoints, ts.Version, sessions, backend, open, time.Now()
	s.Error = ""
	if applyErr != nil {
		s.Error, s.InPrefs = applyErr.Error(), false
	}
	st := *s
	r.mu.Unlock()
	if r.Reports != nil {
		r.Reports(st)
	}
}
