package relay

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/ratelimit"
)

// Admission control, before TLS. Every accepted TCP connection starts in a small pool of
// pending (unauthenticated) connections: TLS and DERP handshakes in progress, probes and
// other plain HTTP requests. A connection leaves the pool when the DERP server has verified
// and registered its client (derp.Admittable); from then on it counts against max_clients,
// which pending connections can never take. The pool is bounded in size, per source
// (address, or /64 for IPv6) and in time, and new connections are rate-limited per source
// before the global accept rate, so one address can neither fill the pool nor spend
// everyone's accept budget. When the pool is full a newcomer makes room by closing the
// oldest pending connection of the source holding the most, if that source holds more than
// the newcomer's would. Mesh peers' addresses pass every limit (the pool may exceed its size
// by their few connections), and theirs are never closed to make room.

// admitLimits configure admission control; zero values mean no limit.
type admitLimits struct {
	AcceptRate, AcceptBurst         int // new connections per second, all sources
	SourceRate, SourceBurst         int // new connections per second, per source
	MaxPending, MaxPendingPerSource int // connections not yet authenticated
	PendingLifetime                 time.Duration
	IsMeshPeer                      func(netip.Addr) bool // nil: none
}

// ListenerStats count what admission control let in and turned away.
type ListenerStats struct {
	Accepted              atomic.Int64
	RejectedRate          atomic.Int64 // over the global accept rate
	RejectedSourceRate    atomic.Int64 // over the per-source accept rate
	RejectedSourcePending atomic.Int64 // the source held max_pending_per_source already
	RejectedPendingFull   atomic.Int64 // the pool was full and nobody could make room
	Evicted               atomic.Int64 // pending connections closed to make room
	Expired               atomic.Int64 // pending connections closed at the end of their lifetime
	Admitted              atomic.Int64 // pending connections whose client was authenticated
	Open                  atomic.Int64 // TCP connections open now
	Pending               atomic.Int64 // of which not yet authenticated
}

// maxSources bounds the per-source table: beyond it (checked at most once a second, unless
// it doubled), sources with nothing pending and a refilled bucket are forgotten, and if that
// is not enough, all with nothing pending.
const maxSources = 4096

type admission struct {
	lim    admitLimits
	global *ratelimit.Bucket
	stats  *ListenerStats

	mu        sync.Mutex
	sources   map[netip.Prefix]*source
	busy      map[netip.Prefix]*source // sources with pending connections
	pending   int
	lastPrune time.Time
}

// source is one address's (or /64's) accept bucket and pending connections, oldest first.
type source struct {
	tokens  float64
	last    time.Time
	pending []*admittedConn
}

func newAdmission(lim admitLimits, stats *ListenerStats) *admission {
	return &admission{
		lim:     lim,
		global:  ratelimit.New(float64(lim.AcceptRate), lim.AcceptBurst),
		stats:   stats,
		sources: map[netip.Prefix]*source{},
		busy:    map[netip.Prefix]*source{},
	}
}

// sourcePrefix is what per-source limits count by: the address, or its /64 for IPv6 (one
// subscriber's LAN).
func sourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// admit decides on a freshly accepted connection: it returns the wrapped connection, or
// nil after counting why it was turned away (the caller closes it).
func (a *admission) admit(c net.Conn) *admittedConn {
	addr := remoteAddr(c)
	mesh := a.lim.IsMeshPeer != nil && a.lim.IsMeshPeer(addr)
	p := sourcePrefix(addr)
	now := time.Now()
	a.mu.Lock()
	src := a.sourceLocked(p, now)
	switch {
	case mesh:
	case !src.take(now, a.lim.SourceRate, a.lim.SourceBurst):
		a.mu.Unlock()
		a.stats.RejectedSourceRate.Add(1)
		return nil
	case a.lim.MaxPendingPerSource > 0 && len(src.pending) >= a.lim.MaxPendingPerSource:
		a.mu.Unlock()
		a.stats.RejectedSourcePending.Add(1)
		return nil
	case !a.global.Allow(1):
		a.mu.Unlock()
		a.stats.RejectedRate.Add(1)
		return nil
	}
	var victim *admittedConn
	if !mesh && a.lim.MaxPending > 0 && a.pending >= a.lim.MaxPending {
		if victim = a.victimLocked(len(src.pending)); victim == nil {
			a.mu.Unlock()
			a.stats.RejectedPendingFull.Add(1)
			return nil
		}
		a.removeLocked(victim)
	}
	ac := &admittedConn{Conn: c, a: a, src: p, mesh: mesh, state: statePending}
	src.pending = append(src.pending, ac)
	a.busy[p] = src
	a.pending++
	a.stats.Accepted.Add(1)
	a.stats.Open.Add(1)
	a.stats.Pending.Add(1)
	if a.lim.PendingLifetime > 0 {
		ac.timer = time.AfterFunc(a.lim.PendingLifetime, ac.expire)
	}
	a.mu.Unlock()
	if victim != nil {
		a.stats.Evicted.Add(1)
		victim.Close()
	}
	return ac
}

func (a *admission) sourceLocked(p netip.Prefix, now time.Time) *source {
	if s := a.sources[p]; s != nil {
		return s
	}
	if n := len(a.sources); n >= 2*maxSources || n >= maxSources && now.Sub(a.lastPrune) > time.Second {
		a.lastPrune = now
		a.pruneLocked(now)
	}
	s := &source{tokens: float64(a.lim.SourceBurst), last: now}
	a.sources[p] = s
	return s
}

func (a *admission) pruneLocked(now time.Time) {
	for p, s := range a.sources {
		if len(s.pending) == 0 && s.refilled(now, a.lim.SourceRate, a.lim.SourceBurst) {
			delete(a.sources, p)
		}
	}
	if len(a.sources) >= maxSources {
		for p, s := range a.sources {
			if len(s.pending) == 0 {
				delete(a.sources, p)
			}
		}
	}
}

// take spends one of the source's accept tokens (always true without a per-source rate).
func (s *source) take(now time.Time, rate, burst int) bool {
	if rate <= 0 {
		return true
	}
	s.tokens = min(float64(max(burst, 1)), s.tokens+now.Sub(s.last).Seconds()*float64(rate))
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

func (s *source) refilled(now time.Time, rate, burst int) bool {
	return rate <= 0 || s.tokens+now.Sub(s.last).Seconds()*float64(rate) >= float64(burst)
}

// victimLocked picks the pending connection to close for a newcomer whose source holds
// have pending connections: the oldest of the source holding the most, if that is more
// than the newcomer's source would. Mesh peers' connections are never picked.
func (a *admission) victimLocked(have int) *admittedConn {
	var most *source
	count := func(s *source) int {
		n := 0
		for _, c := range s.pending {
			if !c.mesh {
				n++
			}
		}
		return n
	}
	mostN := 0
	for _, s := range a.busy {
		if n := count(s); n > mostN {
			most, mostN = s, n
		}
	}
	if most == nil || mostN <= have+1 {
		return nil
	}
	for _, c := range most.pending {
		if !c.mesh {
			return c
		}
	}
	return nil
}

// removeLocked takes c out of the pool.
func (a *admission) removeLocked(c *admittedConn) {
	if c.state != statePending {
		return
	}
	c.state = stateDone
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil // an admitted client may stay for days: let the timer go
	}
	if s := a.sources[c.src]; s != nil {
		if i := slices.Index(s.pending, c); i >= 0 {
			s.pending = slices.Delete(s.pending, i, i+1)
		}
		if len(s.pending) == 0 {
			delete(a.busy, c.src)
		}
	}
	a.pending--
	a.stats.Pending.Add(-1)
}

const (
	statePending = iota
	stateAdmitted
	stateDone // closed, or evicted and closing
)

// admittedConn is an accepted connection under admission control.
type admittedConn struct {
	net.Conn
	a     *admission
	src   netip.Prefix
	mesh  bool
	state int         // guarded by a.mu
	timer *time.Timer // ends a pending connection's lifetime
	once  sync.Once
}

// Admitted moves the connection out of the pending pool (derp.Admittable).
func (c *admittedConn) Admitted() {
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	if c.state == statePending {
		c.a.removeLocked(c)
		c.state = stateAdmitted
		c.a.stats.Admitted.Add(1)
	}
}

var _ derp.Admittable = (*admittedConn)(nil)

func (c *admittedConn) expire() {
	c.a.mu.Lock()
	pending := c.state == statePending
	c.a.mu.Unlock()
	if pending {
		c.a.stats.Expired.Add(1)
		c.Close()
	}
}

// Close gives the connection's place back (once, however often it is called).
func (c *admittedConn) Close() error {
	c.once.Do(func() {
		c.a.mu.Lock()
		c.a.removeLocked(c)
		c.state = stateDone
		c.a.mu.Unlock()
		c.a.stats.Open.Add(-1)
	})
	return c.Conn.Close()
}

func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// NetConn is the connection under the wrapper, which buffers nothing (derp's idle readers
// wait on its socket).
func (c *admittedConn) NetConn() net.Conn { return c.Conn }
