package verify

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the verifier's counters, for status and metrics.
type Stats struct {
	Admitted   int64 // clients admitted, by any check or without checks
	Refused    int64 // clients refused
	Unverified int64 // admitted because no check is configured
	FailOpen   int64 // admitted because the admission URL was unreachable and fail_open is on

	// Per check, counted only when the check was asked (a yes stops the later ones).
	Allow      CheckStats
	Tailscaled CheckStats
	URL        CheckStats

	URLRequests       int64 // requests sent to the admission URL
	CacheHits         int64 // URL answers taken from the positive cache
	NegativeCacheHits int64 // URL refusals taken from the negative cache
	Coalesced         int64 // checks that waited for a request already in flight for the same client

	LastError   string    // the latest check failure ("" if none), e.g. a missing socket
	LastErrorAt time.Time // when it happened
}

// CheckStats counts one check's answers.
type CheckStats struct {
	Admitted int64 // said yes
	Refused  int64 // said no
	Errors   int64 // could not answer (the client was refused unless fail_open admitted it)
}

type checkCounters struct {
	admitted, refused, errors atomic.Int64
}

func (c *checkCounters) snapshot() CheckStats {
	return CheckStats{Admitted: c.admitted.Load(), Refused: c.refused.Load(), Errors: c.errors.Load()}
}

type counters struct {
	admitted, refused, unverified, failOpen atomic.Int64
	allow, tailscaled, url                  checkCounters
	urlRequests, cacheHits, negHits         atomic.Int64
	coalesced                               atomic.Int64
}

func (c *counters) check(name string) *checkCounters {
	switch name {
	case checkAllow:
		return &c.allow
	case checkTailscaled:
		return &c.tailscaled
	default:
		return &c.url
	}
}

// Stats returns a snapshot of the counters.
func (v *Verifier) Stats() Stats {
	s := Stats{
		Admitted:          v.stats.admitted.Load(),
		Refused:           v.stats.refused.Load(),
		Unverified:        v.stats.unverified.Load(),
		FailOpen:          v.stats.failOpen.Load(),
		Allow:             v.stats.allow.snapshot(),
		Tailscaled:        v.stats.tailscaled.snapshot(),
		URL:               v.stats.url.snapshot(),
		URLRequests:       v.stats.urlRequests.Load(),
		CacheHits:         v.stats.cacheHits.Load(),
		NegativeCacheHits: v.stats.negHits.Load(),
		Coalesced:         v.stats.coalesced.Load(),
	}
	if e := v.lastErr.Load(); e != nil {
		s.LastError, s.LastErrorAt = e.msg, e.at
	}
	return s
}

type timedError struct {
	at  time.Time
	msg string
}

// logLimiter lets one log line through per period and counts the ones it held back.
type logLimiter struct {
	period     time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, with the number of lines suppressed since the last one.
func (l *logLimiter) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.period {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
