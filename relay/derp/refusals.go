package derp

import (
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// refusalLog keeps refused clients from flooding the log: OpenWrt keeps its log in a small
// ring in RAM, and random keys from one address would wipe it in seconds. Within each
// window (a minute), a key is logged at most once per source in refusalKeyEvery, each
// source gets at most refusalLinesPerSource lines and all sources together
// refusalLinesPerWindow; what is held back is counted and summarised when the window ends,
// one line per address ("clients refused in the last minute" source=A count=N).
type refusalLog struct {
	log    *slog.Logger
	window time.Duration

	mu      sync.Mutex
	keys    map[string]time.Time // key+source → when it was last logged
	sources map[netip.Addr]*refusalCount
	other   refusalCount // sources beyond maxRefusalSources: never logged one by one
	lines   int          // lines logged in this window
	timer   *time.Timer  // ends the window; nil when none is open
}

// refusalCount is one source's window: refusals, lines logged, refusals held back by the
// limits (a key logged recently is neither).
type refusalCount struct {
	refused, logged, held int
}

const (
	refusalWindow         = time.Minute
	refusalKeyEvery       = 10 * time.Minute
	refusalLinesPerSource = 3
	refusalLinesPerWindow = 20
	refusalSummaryLines   = 10 // per-source summaries; the rest are summed in one line
	maxRefusalSources     = 1024
	maxRefusalKeys        = 1024
)

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, window: refusalWindow, keys: map[string]time.Time{}, sources: map[netip.Addr]*refusalCount{}}
}

// note records one refusal and logs it unless a limit holds it back.
func (r *refusalLog) note(key Key, src netip.Addr, err error) {
	id := key.String() + " " + src.String()
	now := time.Now()
	r.mu.Lock()
	if r.timer == nil {
		r.timer = time.AfterFunc(r.window, r.flush)
	}
	sc := r.sources[src]
	if sc == nil {
		sc = &r.other
		if len(r.sources) < maxRefusalSources {
			sc = &refusalCount{}
			r.sources[src] = sc
		}
	}
	sc.refused++
	last, seen := r.keys[id]
	logIt := false
	switch {
	case seen && now.Sub(last) < refusalKeyEvery:
		// logged recently: a client retrying is not news
	case sc == &r.other || sc.logged >= refusalLinesPerSource || r.lines >= refusalLinesPerWindow:
		sc.held++
	default:
		logIt = true
		sc.logged++
		r.lines++
		if len(r.keys) >= maxRefusalKeys { // bounded: forget everyone rather than grow
			clear(r.keys)
		}
		r.keys[id] = now
	}
	r.mu.Unlock()
	if logIt {
		r.log.Warn("client refused", "key", key.String(), "source", src.String(), "reason", err.Error())
	}
}

// flush ends the window: it logs a summary for every source whose refusals were held back.
func (r *refusalLog) flush() {
	r.mu.Lock()
	type held struct {
		src netip.Addr
		refusalCount
	}
	var hs []held
	for src, c := range r.sources {
		if c.held > 0 {
			hs = append(hs, held{src, *c})
		}
	}
	other := r.other
	clear(r.sources)
	r.other, r.lines, r.timer = refusalCount{}, 0, nil
	r.mu.Unlock()
	// sort.Slice, not slices.SortFunc: a generic sort per element type costs ~12 KB of code.
	sort.Slice(hs, func(i, j int) bool { return hs[i].refused > hs[j].refused })
	if len(hs) > refusalSummaryLines {
		for _, h := range hs[refusalSummaryLines:] {
			other.refused += h.refused
			other.held += h.held
		}
		hs = hs[:refusalSummaryLines]
	}
	for _, h := range hs {
		r.log.Warn("clients refused in the last minute", "source", h.src.String(), "count", h.refused, "not_logged", h.held)
	}
	if other.held > 0 {
		r.log.Warn("clients refused in the last minute", "source", "other addresses", "count", other.refused, "not_logged", other.held)
	}
}

// close ends an open window at once, so its summary is not lost at shutdown.
func (r *refusalLog) close() {
	r.mu.Lock()
	t := r.timer
	r.mu.Unlock()
	if t != nil && t.Stop() {
		r.flush()
	}
}
