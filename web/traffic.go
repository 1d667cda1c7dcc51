package web

import (
	"sync"
	"time"
)

// Sample is one minute of relay traffic.
type Sample struct {
	T        time.Time `json:"t"`
	BytesIn  int64     `json:"in"`  // received in the minute before T
	BytesOut int64     `json:"out"` // sent in the minute before T
	Clients  int64     `json:"clients"`
}

// traffic is a ring of the last n samples, made from the relay's running totals.
type traffic struct {
	mu   sync.Mutex
	ring []Sample
	next int
	full bool
	last Counters
	seen bool
}

func newTraffic(n int) *traffic { return &traffic{ring: make([]Sample, n)} }

// add records the totals c at now: the bytes since the previous call (all of c's when the
// totals went back, as when the relay restarted).
func (t *traffic) add(now time.Time, c Counters) {
	t.mu.Lock()
	defer t.mu.Unlock()
	in, out := c.BytesIn, c.BytesOut
	if t.seen && in >= t.last.BytesIn && out >= t.last.BytesOut {
		in, out = in-t.last.BytesIn, out-t.last.BytesOut
	}
	if !t.seen {
		in, out = 0, 0 // totals since start, not a minute's worth
	}
	t.last, t.seen = c, true
	t.ring[t.next] = Sample{T: now.UTC().Truncate(time.Second), BytesIn: in, BytesOut: out, Clients: c.Clients}
	t.next = (t.next + 1) % len(t.ring)
	t.full = t.full || t.next == 0
}

// samples returns the ring, oldest first.
func (t *traffic) samples() []Sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.full {
		return append([]Sample(nil), t.ring[:t.next]...)
	}
	return append(append([]Sample(nil), t.ring[t.next:]...), t.ring[:t.next]...)
}
