package agent

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"time"
)

// Part is one supervised piece of the daemon: the relay, ddns, acme, the subnet setup, the
// status socket. The agent lists the parts of the current config (parts.go); the
// supervisor runs them.
type Part struct {
	Name string
	// Section is the config the part runs from, compared across reloads
	// (reflect.DeepEqual): the part restarts only when it changed.
	Section any
	// Run does the part's work until ctx ends and returns only when all of it has stopped.
	// An error (or a return before ctx ends) is a failure: the part is started again.
	Run func(ctx context.Context) error
	// Undo, if set, takes back the part's changes to the system when a reload turns the part
	// off (not when it only restarts, nor when the daemon stops).
	Undo func(ctx context.Context) error
}

// Restart backoff: a failed part starts again after 1 s, doubling to 1 min; one that ran
// for a while before failing starts over at 1 s.
const (
	backoffMin    = time.Second
	backoffMax    = time.Minute
	backoffForget = 2 * time.Minute
	// failingAfter consecutive failures make a part "failing repeatedly" (told once per
	// streak, to supervisor.failing).
	failingAfter = 3
)

// supervisor runs parts, each in its own goroutine, so that one part's failure never
// stops another: a failed part is restarted with backoff while the others keep going.
type supervisor struct {
	log *slog.Logger
	// state hears of each part's state: running (err nil) or failed (err), and gone when its
	// goroutine ends.
	state func(name string, err error, gone bool)
	// failing, if set, hears once per streak that a part failed failingAfter times in a
	// row, with its last error. It must return quickly.
	failing func(name string, err error, times int)
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	running map[string]*runningPart
}

func newSupervisor(log *slog.Logger, state func(name string, err error, gone bool)) *supervisor {
	return &supervisor{log: log, state: state, now: time.Now, after: time.After, running: map[string]*runningPart{}}
}

type runningPart struct {
	Part
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the part and waits until its Run has returned.
func (rp *runningPart) stop() {
	rp.cancel()
	<-rp.done
}

// apply makes the running parts match want: parts no longer wanted are stopped (and
// undone), parts whose section changed are restarted, new ones are started. A part is
// always stopped before its successor starts, so two never work on the same thing.
func (s *supervisor) apply(ctx context.Context, want []Part) {
	wanted := map[string]Part{}
	for _, p := range want {
		wanted[p.Name] = p
	}
	for name, rp := range s.running {
		p, ok := wanted[name]
		if ok && reflect.DeepEqual(p.Section, rp.Section) {
			continue
		}
		s.log.Info("stopping part", "component", name)
		rp.stop()
		delete(s.running, name)
		if !ok && rp.Undo != nil { // turned off, not just changed: undo what it set up
			if err := rp.Undo(ctx); err != nil {
				s.log.Error("undoing the part's changes failed", "component", name, "err", err)
			}
		}
	}
	for _, p := range want {
		if _, ok := s.running[p.Name]; !ok {
			s.running[p.Name] = s.start(ctx, p)
		}
	}
}

// stopAll stops every part and returns once each one's goroutine has ended.
func (s *supervisor) stopAll() {
	for name, rp := range s.running {
		rp.stop()
		delete(s.running, name)
	}
}

// start runs p in a goroutine until ctx ends or the part is stopped, restarting it with
// backoff when it fails.
func (s *supervisor) start(ctx context.Context, p Part) *runningPart {
	ctx, cancel := context.WithCancel(ctx)
	rp := &runningPart{Part: p, cancel: cancel, done: make(chan struct{})}
	log := s.log.With("component", p.Name)
	go func() {
		defer close(rp.done)
		defer s.state(p.Name, nil, true)
		backoff := backoffMin
		fails := 0 // in a row
		for {
			started := s.now()
			s.state(p.Name, nil, false)
			err := p.Run(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			if s.now().Sub(started) > backoffForget {
				backoff, fails = backoffMin, 0 // it ran fine for a while: start over
			}
			if fails++; fails == failingAfter && s.failing != nil {
				s.failing(p.Name, err, fails)
			}
			s.state(p.Name, err, false)
			log.Error("part failed; restarting", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-s.after(backoff):
			}
			backoff = min(2*backoff, backoffMax)
		}
	}()
	return rp
}
