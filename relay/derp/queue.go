package derp

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"
)

// Queues hold packets between a sender's reader and a receiver's writer. Each is bounded
// twice: by depth (QueueDepth packets, as in derper) and by bytes, against the receiver's own
// budget (Options.QueueBytes; a mesh link's is meshQueueBytes) and the server's total
// (Options.QueueBytesTotal). So receivers that never read cannot make the relay hold 64 KiB
// times the queue depth each. When a bound is hit the oldest packets make room (a fresh
// packet is worth more to a tunnel than a stale one), and every drop is counted by reason.

// budget is a byte allowance: a receiver's own, checked against its parent (the server's).
type budget struct {
	limit  int64
	used   atomic.Int64
	parent *budget
}

// take reserves n bytes at every level, or none; when a level has no room it returns the
// drop reason that names it.
func (b *budget) take(n int64) (ok bool, reason int) {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false, dropQueueBytes
	}
	if p := b.parent; p != nil && p.used.Add(n) > p.limit {
		p.used.Add(-n)
		b.used.Add(-n)
		return false, dropTotalQueueBytes
	}
	return true, 0
}

func (b *budget) give(n int64) {
	b.used.Add(-n)
	if b.parent != nil {
		b.parent.used.Add(-n)
	}
}

// queue is what push and drain work on: a client's ring (under the client's lock) or a mesh
// link's channel.
type queue interface {
	put(p packet) bool // false when full
	take() (packet, bool)
	len() int
}

// ring is a client's queue: a bounded FIFO whose storage is allocated with the first packet,
// so a client that never receives anything pays only for the header.
type ring struct {
	buf     []packet
	head, n int
	depth   int
}

func (r *ring) put(p packet) bool {
	if r.n == r.depth {
		return false
	}
	if r.buf == nil {
		r.buf = make([]packet, r.depth)
	}
	r.buf[(r.head+r.n)%r.depth] = p
	r.n++
	return true
}

func (r *ring) take() (packet, bool) {
	if r.n == 0 {
		return nil, false
	}
	p := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % r.depth
	r.n--
	return p, true
}

func (r *ring) len() int { return r.n }

// chanQueue is a mesh link's queue, which its writer waits on.
type chanQueue chan packet

func (q chanQueue) put(p packet) bool {
	select {
	case q <- p:
		return true
	default:
		return false
	}
}

func (q chanQueue) take() (packet, bool) {
	select {
	case p := <-q:
		return p, true
	default:
		return nil, false
	}
}

func (q chanQueue) len() int { return len(q) }

// push queues p on q within b without blocking. When q is full, its oldest packet makes
// room; when bytes are short, the oldest packet of bulk does (the receiver's data queue,
// which may be q), else of q. After three tries p itself is dropped. Drops are counted in
// st and, when not nil, in dropped. It reports whether p was queued.
func push(p packet, q, bulk queue, b *budget, st *Stats, dropped *atomic.Int64) bool {
	n := p.cost()
	reason := dropQueueHead
	for range 3 {
		var ok bool
		if ok, reason = b.take(n); ok {
			if q.put(p) {
				return true
			}
			b.give(n)
			reason = dropQueueHead
		}
		from := q
		if reason != dropQueueHead && bulk.len() > 0 {
			from = bulk
		}
		if old, ok := from.take(); ok {
			b.give(old.cost())
			dropPacket(st, dropped, reason, old)
		}
	}
	if reason == dropQueueHead {
		reason = dropQueueTail
	}
	dropPacket(st, dropped, reason, p)
	return false
}

// drain empties q, counting each packet as dropped for reason.
func drain(q queue, b *budget, st *Stats, dropped *atomic.Int64, reason int) {
	for {
		p, ok := q.take()
		if !ok {
			return
		}
		b.give(p.cost())
		dropPacket(st, dropped, reason, p)
	}
}

func dropPacket(st *Stats, dropped *atomic.Int64, reason int, p packet) {
	st.drop(reason, p.len())
	if dropped != nil {
		dropped.Add(1)
	}
	p.release()
}

// enqueue adds p to c's queues without ever blocking, and makes sure a sender runs.
func (c *sclient) enqueue(p packet) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		dropPacket(&c.s.stats, nil, dropGoneDisconnected, p)
		return
	}
	if c.tryDirectLocked(p) {
		return
	}
	q := &c.data
	if p.disco {
		q = &c.disco
	}
	if push(p, q, &c.data, &c.queued, &c.s.stats, nil) {
		c.startSenderLocked()
	}
	c.mu.Unlock()
}

// drainLocked drops what is still queued when the reader ends.
func (c *sclient) drainLocked() {
	drain(&c.data, &c.queued, &c.s.stats, nil, dropGoneDisconnected)
	drain(&c.disco, &c.queued, &c.s.stats, nil, dropGoneDisconnected)
}

// DefaultQueueBytesTotal is the server-wide queue budget when Options leave it unset: an
// eighth of the memory the process may use (GOMEMLIMIT when set, else a quarter of the
// box's RAM, which is what the OpenWrt package gives it), between 1 MiB and 64 MiB. A
// 128 MB router gets 4 MiB: two thousand full-size WireGuard packets in flight.
func DefaultQueueBytesTotal() int64 {
	mem := debug.SetMemoryLimit(-1)
	if mem == math.MaxInt64 {
		mem = memTotal() / 4
	}
	return min(max(mem/8, 1<<20), 64<<20)
}

// memTotal is the box's RAM from /proc/meminfo (0 if unknown).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
			return kb << 10
		}
	}
	return 0
}
