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

// push queues p on q within b without blocking. When q is full, its oldest packet makes
// room; when bytes are short, the oldest packet of bulk does (the receiver's data queue,
// which may be q), else of q. After three tries p itself is dropped. Drops are counted in
// st and, when not nil, in dropped. It reports whether p was queued.
func push(p packet, q, bulk chan packet, b *budget, st *Stats, dropped *atomic.Int64) bool {
	n := p.cost()
	reason := dropQueueHead
	for range 3 {
		var ok bool
		if ok, reason = b.take(n); ok {
			select {
			case q <- p:
				return true
			default:
				b.give(n)
				reason = dropQueueHead
			}
		}
		from := q
		if reason != dropQueueHead && len(bulk) > 0 {
			from = bulk
		}
		select {
		case old := <-from:
			b.give(old.cost())
			dropPacket(st, dropped, reason, old)
		default:
		}
	}
	if reason == dropQueueHead {
		reason = dropQueueTail
	}
	dropPacket(st, dropped, reason, p)
	return false
}

// drain empties q, counting each packet as dropped for reason.
func drain(q chan packet, b *budget, st *Stats, dropped *atomic.Int64, reason int) {
	for {
		select {
		case p := <-q:
			b.give(p.cost())
			dropPacket(st, dropped, reason, p)
		default:
			return
		}
	}
}

func dropPacket(st *Stats, dropped *atomic.Int64, reason int, p packet) {
	st.drop(reason, p.len())
	if dropped != nil {
		dropped.Add(1)
	}
	p.release()
}

// enqueue adds p to c's queues without ever blocking.
func (c *sclient) enqueue(p packet) {
	select {
	case <-c.done:
		dropPacket(&c.s.stats, nil, dropGoneDisconnected, p)
		return
	default:
	}
	q := c.dataQ
	if p.disco {
		q = c.discoQ
	}
	if !push(p, q, c.dataQ, &c.queued, &c.s.stats, nil) {
		return
	}
	select {
	case <-c.done: // the reader ended meanwhile and may have drained already
		c.drainQueues()
	default:
		c.kick()
	}
}

func (c *sclient) drainQueues() {
	drain(c.dataQ, &c.queued, &c.s.stats, nil, dropGoneDisconnected)
	drain(c.discoQ, &c.queued, &c.s.stats, nil, dropGoneDisconnected)
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
