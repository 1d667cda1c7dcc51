// Package agent runs edgerelay's parts (relay, ddns, acme, subnet, peer_relay, notify) from one config: it
// starts the enabled ones, restarts a failed part with backoff without touching the others,
// reloads the config on request, passes events between the parts, and owns the state that
// status and derpmap report.
//
// The shape, in the order a newcomer meets it:
//   - A part is a library (relay, ddns, acme, netfilter) that owns its Config, with
//     SetDefaults and a Validate whose problems name keys relative to its section
//     (agent/field). It imports no other part and nothing of the agent's but the leaves
//     agent/field and agent/atomicfile (layout_test.go).
//   - agent/config composes the sections, reads secrets, adds the line to each problem.
//   - parts.go turns the enabled sections into Parts (name, section, Run, Undo) and wires
//     the events: ddns addresses to the relay's region, acme certificates to the relay,
//     what the parts report to the webhooks of the notify part (notify.go).
//   - supervise.go runs them: a failing part restarts with backoff, a reload restarts only
//     the parts whose section changed and undoes those turned off.
//   - Parts publish snapshots into the agent (status.go); status never waits on a part.
package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"github.com/edgerelay/edgerelay/notify"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/web"
)

// Agent supervises the parts built from one config.
type Agent struct {
	log *slog.Logger
	// Version is reported by status.
	Version string
	// Logs is the tail of the daemon's log the web page shows (nil: none).
	Logs *web.LogTail

	reloadReq chan struct{} // the web page saved the config file: re-read it

	certs certSwitch // the relay's certificate source in acme mode

	regionKick   chan struct{} // the addresses may have changed: recompute the region
	peerKick     chan struct{} // the same, for the peer relay's static endpoints
	mapReady     chan struct{} // closed at the first region
	mapReadyOnce sync.Once
	fileMu       sync.Mutex // one write of the handed-out map at a time (region.go)

	mu    sync.Mutex
	cfg   *config.Config
	relay *relay.Relay  // the running relay: status reads its counters
	acme  *acme.Manager // the running ACME manager (tests renew through it)
	// notifier is the running notify part's (nil without one): events go to it, status
	// reads its counters.
	notifier *notify.Notifier
	addrs    relay.Addrs // the line's current addresses, as ddns last saw them

	// What the other parts last published for status (status.go): reading them never waits
	// on a part or runs a command.
	ddnsState      []ddns.RecordState
	acmeState      *ACMEStatus
	subnetState    *SubnetStatus
	peerRelayState *peerrelay.Status

	dmap        *relay.Map        // the relay's map to paste, as of now (region.go)
	published   *relay.DERPRegion // the region last handed out for pasting
	mapDir      string            // where published is kept
	staleLogged relay.DERPRegion  // the region last logged as replacing a stale one
	hostHint    string            // a typed IP hostname that is no longer this box's

	started time.Time
	loaded  time.Time        // when cfg was read
	partErr map[string]error // running parts: nil, or the error of their last failure
}

// New returns an agent for cfg.
func New(cfg *config.Config, log *slog.Logger) *Agent {
	now := time.Now()
	return &Agent{cfg: cfg, log: log, started: now, loaded: now, partErr: map[string]error{},
		regionKick: make(chan struct{}, 1), peerKick: make(chan struct{}, 1), mapReady: make(chan struct{}),
		reloadReq: make(chan struct{}, 1)}
}

// Relay returns the running relay (nil when off or not started).
func (a *Agent) Relay() *relay.Relay {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relay
}

// Run runs the parts until ctx ends and returns once every part has stopped. Each receive
// on reload re-reads the config file; a config with problems is logged and ignored (the
// running parts keep going).
func (a *Agent) Run(ctx context.Context, reload <-chan struct{}) error {
	sv := newSupervisor(a.log, a.setPartState)
	sv.failing = a.notifyPartFailing
	defer sv.stopAll()
	sv.apply(ctx, a.parts())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
		case <-a.reloadReq: // the web page saved the config file
		}
		if a.cfg.Source == "" {
			a.log.Info("reload: running the embedded default config; nothing to re-read")
			continue
		}
		cfg, err := config.Load(a.cfg.Source)
		if err != nil {
			a.log.Error("reload: config has problems; keeping the running config", "file", a.cfg.Source, "problems", err.Error())
			continue
		}
		a.log.Info("reload: config re-read", "file", cfg.Source)
		a.mu.Lock()
		a.cfg, a.loaded = cfg, time.Now()
		a.mu.Unlock()
		sv.apply(ctx, a.parts())
		kick(a.regionKick) // ddns may now keep (or no longer keep) the relay's name
	}
}

// RequestReload has Run re-read the config file soon, as SIGHUP does.
func (a *Agent) RequestReload() { kick(a.reloadReq) }

// setPartState records a part's state for status: running (nil), its last failure, or
// gone.
func (a *Agent) setPartState(name string, err error, gone bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gone {
		delete(a.partErr, name)
		return
	}
	a.partErr[name] = err
}
