// Package agent runs edgerelay's parts (relay, ddns, acme, subnet) from one config: it
// starts the enabled ones, restarts a failed part with backoff without touching the others,
// reloads the config on request, and owns the state that status and derpmap report.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/netfilter"
	"github.com/edgerelay/edgerelay/relay"
)

// Agent supervises the parts built from one config.
type Agent struct {
	log *slog.Logger
	// Version is reported by status.
	Version string

	certs certSwitch // the relay's certificate source in acme mode

	regionKick   chan struct{} // the addresses may have changed: recompute the region
	mapReady     chan struct{} // closed at the first region
	mapReadyOnce sync.Once

	mu    sync.Mutex
	cfg   *config.Config
	relay *relay.Relay
	addrs relay.Addrs // the line's current addresses, as ddns last saw them
	ddns  *ddns.Updater
	acme  *acme.Manager
	net   *netfilter.Reconciler

	dmap        *relay.Map        // the relay's map to paste, as of now (region.go)
	published   *relay.DERPRegion // the region last handed out for pasting
	mapDir      string            // where published is kept
	staleLogged relay.DERPRegion  // the region last logged as replacing a stale one
	hostHint    string            // a typed IP hostname that is no longer this box's

	started time.Time
	partErr map[string]error // running parts: nil, or the error of their last failure
}

// New returns an agent for cfg.
func New(cfg *config.Config, log *slog.Logger) *Agent {
	return &Agent{cfg: cfg, log: log, started: time.Now(), partErr: map[string]error{},
		regionKick: make(chan struct{}, 1), mapReady: make(chan struct{})}
}

// Relay returns the running relay (nil when off or not started).
func (a *Agent) Relay() *relay.Relay {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relay
}

// part is one supervised piece: a name, the config slice it depends on, and how to run it.
type part struct {
	name    string
	section any // compared across reloads: the part restarts only when it changed
	run     func(ctx context.Context) error
	// retire, if set, undoes the part's changes to the system when a reload turns it off.
	retire func(ctx context.Context) error
}

// Run runs the parts until ctx ends. Each receive on reload re-reads the config file; a
// config with problems is logged and ignored (the running parts keep going).
func (a *Agent) Run(ctx context.Context, reload <-chan struct{}) error {
	running := map[string]*runningPart{}
	defer func() {
		for _, rp := range running {
			rp.stop()
		}
	}()
	a.apply(ctx, running)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
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
			a.cfg = cfg
			a.mu.Unlock()
			a.apply(ctx, running)
			a.kickRegion() // ddns may now keep (or no longer keep) the relay's name
		}
	}
}

// apply starts, restarts or stops parts so that they match a.cfg.
func (a *Agent) apply(ctx context.Context, running map[string]*runningPart) {
	want := map[string]part{}
	for _, p := range a.parts() {
		want[p.name] = p
	}
	for name, rp := range running {
		p, ok := want[name]
		if ok && reflect.DeepEqual(p.section, rp.section) {
			continue
		}
		a.log.Info("stopping part", "part", name)
		rp.stop()
		delete(running, name)
		if !ok && rp.retire != nil { // turned off, not just changed: undo what it set up
			if err := rp.retire(ctx); err != nil {
				a.log.Error("undoing the part's changes failed", "part", name, "err", err)
			}
		}
	}
	for name, p := range want {
		if _, ok := running[name]; !ok {
			running[name] = a.start(ctx, p)
		}
	}
}

type runningPart struct {
	section any
	retire  func(context.Context) error
	cancel  context.CancelFunc
	done    chan struct{}
}

func (rp *runningPart) stop() {
	rp.cancel()
	<-rp.done
}

// start runs p until its context ends, restarting it with backoff (1 s doubling to 1 min)
// when it fails: one part's failure never stops another.
func (a *Agent) start(ctx context.Context, p part) *runningPart {
	ctx, cancel := context.WithCancel(ctx)
	rp := &runningPart{section: p.section, retire: p.retire, cancel: cancel, done: make(chan struct{})}
	log := a.log.With("part", p.name)
	go func() {
		defer close(rp.done)
		backoff := time.Second
		defer func() {
			a.mu.Lock()
			delete(a.partErr, p.name)
			a.mu.Unlock()
		}()
		for {
			started := time.Now()
			a.setPartErr(p.name, nil)
			err := p.run(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			if time.Since(started) > 2*time.Minute {
				backoff = time.Second // it ran fine for a while: start over
			}
			a.setPartErr(p.name, err)
			log.Error("part failed; restarting", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}()
	return rp
}

func (a *Agent) setPartErr(name string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.partErr[name] = err
}
