package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// The supervisor's promises, proven with fake parts: a failing part restarts with backoff
// while another keeps serving; a reload restarts only the parts whose section changed; a
// part turned off is undone after it stopped; stopping returns only when every part's
// goroutine has ended. Time is a fake clock: backoffs are recorded, never slept.

// fakeClock's after fires at once and records the wait asked for; now moves only when a
// test moves it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

func (c *fakeClock) waited() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// fakePart counts its runs and keeps each run's context; its behaviour is run.
type fakePart struct {
	name string
	mu   sync.Mutex
	ctxs []context.Context
	log  *[]string // shared event log, for the order of runs and undos
	run  func(ctx context.Context, n int) error
}

func (p *fakePart) part(section any, undo bool) Part {
	pt := Part{Name: p.name, Section: section, Run: func(ctx context.Context) error {
		p.mu.Lock()
		p.ctxs = append(p.ctxs, ctx)
		n := len(p.ctxs)
		p.mu.Unlock()
		p.event("run %d", n)
		err := p.run(ctx, n)
		p.event("returned %d", n)
		return err
	}}
	if undo {
		pt.Undo = func(context.Context) error { p.event("undo"); return nil }
	}
	return pt
}

var eventsMu sync.Mutex

func (p *fakePart) event(format string, args ...any) {
	eventsMu.Lock()
	defer eventsMu.Unlock()
	*p.log = append(*p.log, p.name+" "+fmt.Sprintf(format, args...))
}

func events(log *[]string) []string {
	eventsMu.Lock()
	defer eventsMu.Unlock()
	return slices.Clone(*log)
}

func (p *fakePart) runs() []context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ctxs)
}

// serve is a healthy part: it works until it is stopped.
func serve(ctx context.Context, _ int) error {
	<-ctx.Done()
	return nil
}

type partStates struct {
	mu sync.Mutex
	m  map[string]error
}

func (s *partStates) set(name string, err error, gone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gone {
		delete(s.m, name)
	} else {
		s.m[name] = err
	}
}

func (s *partStates) get(name string) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err, ok := s.m[name]
	return err, ok
}

func newTestSupervisor(t *testing.T) (*supervisor, *fakeClock, *partStates) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := &partStates{m: map[string]error{}}
	s := newSupervisor(slog.New(slog.NewTextHandler(testWriter{t}, nil)), st.set)
	s.now, s.after = clk.now, clk.after
	t.Cleanup(s.stopAll)
	return s, clk, st
}

func TestSupervisorRestartsAFailingPartWithBackoff(t *testing.T) {
	s, clk, states := newTestSupervisor(t)
	var log []string
	failing := errors.New("DNS API down")
	healed := make(chan struct{})
	flaky := &fakePart{name: "ddns", log: &log, run: func(ctx context.Context, n int) error {
		if n == 3 {
			clk.advance(3 * time.Minute) // this run lasted a while before failing
		}
		if n <= 6 {
			return failing
		}
		close(healed)
		return serve(ctx, n)
	}}
	steady := &fakePart{name: "relay", log: &log, run: serve}
	s.apply(t.Context(), []Part{flaky.part(1, false), steady.part(1, false)})

	waitFor(t, "the failing part to heal", time.Minute, func() bool {
		select {
		case <-healed:
			return true
		default:
			return false
		}
	})
	// 1 s doubling; a run that lasted over two minutes starts the backoff over.
	if got, want := clk.waited(), []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("backoffs %v, want %v", got, want)
	}
	runs := steady.runs()
	if len(runs) != 1 || runs[0].Err() != nil {
		t.Fatalf("the healthy part was disturbed: %d runs, ctx err %v", len(runs), runs[0].Err())
	}
	if err, ok := states.get("relay"); !ok || err != nil {
		t.Errorf("relay state %v %v, want running", err, ok)
	}
	waitFor(t, "the healed part to report running", time.Minute, func() bool {
		err, ok := states.get("ddns")
		return ok && err == nil
	})
}

// While a failed part waits out its backoff, status shows the failure; once it runs again,
// it shows it running.
func TestSupervisorReportsTheFailure(t *testing.T) {
	s, _, states := newTestSupervisor(t)
	backoff := make(chan time.Time)
	s.after = func(time.Duration) <-chan time.Time { return backoff }
	var log []string
	broken := &fakePart{name: "acme", log: &log, run: func(ctx context.Context, n int) error {
		if n == 1 {
			return errors.New("no CA")
		}
		return serve(ctx, n)
	}}
	s.apply(t.Context(), []Part{broken.part(1, false)})
	waitFor(t, "the failure in the part's state", time.Minute, func() bool {
		err, _ := states.get("acme")
		return err != nil && err.Error() == "no CA"
	})
	backoff <- time.Time{}
	waitFor(t, "the part running again", time.Minute, func() bool {
		err, ok := states.get("acme")
		return ok && err == nil && len(broken.runs()) == 2
	})
}

func TestSupervisorReloadRestartsOnlyChangedSections(t *testing.T) {
	s, _, _ := newTestSupervisor(t)
	var log []string
	a := &fakePart{name: "relay", log: &log, run: serve}
	b := &fakePart{name: "ddns", log: &log, run: serve}
	ctx := t.Context()
	s.apply(ctx, []Part{a.part("relay v1", false), b.part([]any{"ddns v1", 300}, true)})
	waitFor(t, "both parts to run", time.Minute, func() bool { return len(a.runs()) == 1 && len(b.runs()) == 1 })

	// The same sections, rebuilt: nothing restarts.
	s.apply(ctx, []Part{a.part("relay v1", false), b.part([]any{"ddns v1", 300}, true)})
	// ddns changed: it alone restarts, and is not undone (it is still on).
	s.apply(ctx, []Part{a.part("relay v1", false), b.part([]any{"ddns v1", 600}, true)})
	waitFor(t, "ddns to restart", time.Minute, func() bool { return len(b.runs()) == 2 })
	if ra := a.runs(); len(ra) != 1 || ra[0].Err() != nil {
		t.Fatalf("the unchanged part restarted: %d runs", len(ra))
	}
	if rb := b.runs(); rb[0].Err() == nil || rb[1].Err() != nil {
		t.Fatalf("ddns: old run not stopped or new one stopped")
	}
	ev := events(&log)
	if slices.Contains(ev, "ddns undo") {
		t.Errorf("a changed part was undone: %q", ev)
	}
	// The old run ended before the new one started.
	if i, j := slices.Index(ev, "ddns returned 1"), slices.Index(ev, "ddns run 2"); i < 0 || j < i {
		t.Errorf("events %q: the new run started before the old one returned", ev)
	}
}

func TestSupervisorUndoesAPartTurnedOff(t *testing.T) {
	s, _, states := newTestSupervisor(t)
	var log []string
	subnet := &fakePart{name: "subnet", log: &log, run: serve}
	relay := &fakePart{name: "relay", log: &log, run: serve}
	ctx := t.Context()
	s.apply(ctx, []Part{relay.part(1, false), subnet.part(1, true)})
	waitFor(t, "the parts to run", time.Minute, func() bool { return len(subnet.runs()) == 1 && len(relay.runs()) == 1 })
	s.apply(ctx, []Part{relay.part(1, false)})
	ev := events(&log)
	if i, j := slices.Index(ev, "subnet returned 1"), slices.Index(ev, "subnet undo"); i < 0 || j < i {
		t.Fatalf("events %q: want the subnet part stopped, then undone", ev)
	}
	if _, ok := states.get("subnet"); ok {
		t.Error("status still lists the part turned off")
	}
	if r := relay.runs(); len(r) != 1 || r[0].Err() != nil {
		t.Error("turning one part off disturbed another")
	}
	// Stopping the daemon stops parts; it undoes nothing.
	s.stopAll()
	if slices.Contains(events(&log), "relay undo") {
		t.Error("stopping undid a part")
	}
}

func TestSupervisorStopWaitsForEveryPart(t *testing.T) {
	s, _, _ := newTestSupervisor(t)
	var log []string
	sawCancel, release := make(chan struct{}), make(chan struct{})
	slow := &fakePart{name: "acme", log: &log, run: func(ctx context.Context, _ int) error {
		<-ctx.Done()
		close(sawCancel)
		<-release // work still finishing after cancellation
		return nil
	}}
	quick := &fakePart{name: "relay", log: &log, run: serve}
	ctx, cancel := context.WithCancel(t.Context())
	s.apply(ctx, []Part{slow.part(1, false), quick.part(1, false)})
	waitFor(t, "the parts to run", time.Minute, func() bool { return len(slow.runs()) == 1 && len(quick.runs()) == 1 })
	stopped := make(chan struct{})
	go func() {
		cancel()
		s.stopAll()
		close(stopped)
	}()
	<-sawCancel
	select {
	case <-stopped:
		t.Fatal("stopAll returned while a part was still working")
	default:
	}
	close(release)
	<-stopped
	if ev := events(&log); !slices.Contains(ev, "acme returned 1") || !slices.Contains(ev, "relay returned 1") {
		t.Fatalf("stopAll returned before every part did: %q", ev)
	}
}
