package web

import (
	"sync"
	"time"
)

// traffic is the last hour of relay traffic, one sample a minute, made from the relay's
// running totals. A sample is [unix time, bytes received, bytes sent, clients], the bytes
// being those of the minute before.
type traffic struct {
	mu   sync.Mutex
	ring [60][4]int64 // the newest last
	n    int          // samples in ring
	last Counters
}

// add records the totals c at now: the bytes since the previous call (all of c's when the
// totals went back, as when the relay restarted; none at the first call).
func (t *traffic) add(now time.Time, c Counters) {
	t.mu.Lock()
	in, out := c.BytesIn, c.BytesOut
	if t.n == 0 {
		in, out = 0, 0 // totals since start, not a minute's worth
	} else if in >= t.last.BytesIn && out >= t.last.BytesOut {
		in, out = in-t.last.BytesIn, out-t.last.BytesOut
	}
	t.last, t.n = c, min(t.n+1, len(t.ring))
	copy(t.ring[:], t.ring[1:])
	t.ring[len(t.ring)-1] = [4]int64{now.Unix(), in, out, c.Clients}
	t.mu.Unlock()
}

// get returns the samples, oldest first.
func (t *traffic) get() [][4]int64 {
	t.mu.Lock()
	ss := append([][4]int64(nil), t.ring[len(t.ring)-t.n:]...)
	t.mu.Unlock()
	return ss
}
