package web

import (
	"sync"
	"time"
)

// traffic is the last hour of relay traffic, one sample a minute, made from the relay's
// running totals. A sample is [unix time, bytes received, bytes sent, clients], the bytes
// being those of the minute before.
type traffic struct {
	mu      sync.Mutex
	samples [][4]int64
	last    Counters
	seen    bool
}

// add records the totals c at now: the bytes since the previous call (all of c's when the
// totals went back, as when the relay restarted; none at the first call).
func (t *traffic) add(now time.Time, c Counters) {
	t.mu.Lock()
	in, out := c.BytesIn, c.BytesOut
	if !t.seen {
		in, out = 0, 0 // totals since start, not a minute's worth
	} else if in >= t.last.BytesIn && out >= t.last.BytesOut {
		in, out = in-t.last.BytesIn, out-t.last.BytesOut
	}
	t.last, t.seen = c, true
	t.samples = keepLast(t.samples, [4]int64{now.Unix(), in, out, c.Clients}, 60)
	t.mu.Unlock()
}

// get returns the samples, oldest first.
func (t *traffic) get() [][4]int64 {
	t.mu.Lock()
	ss := append([][4]int64(nil), t.samples...)
	t.mu.Unlock()
	return ss
}
