// Package ratelimit is a small token bucket used for the relay's accept rate and per-client
// receive rate: rate tokens per second, holding at most burst.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Bucket is a token bucket. The zero value and a nil *Bucket never limit.
type Bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; 0 = unlimited
	burst  float64
	tokens float64
	last   time.Time
}

// New returns a bucket that starts full. rate <= 0 means unlimited.
func New(rate float64, burst int) *Bucket {
	if rate <= 0 {
		return nil
	}
	b := float64(burst)
	if b < 1 {
		b = 1
	}
	return &Bucket{rate: rate, burst: b, tokens: b, last: time.Now()}
}

func (b *Bucket) refill(now time.Time) {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// Allow takes n tokens if they are there.
func (b *Bucket) Allow(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(time.Now())
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// Wait takes n tokens, sleeping until the bucket has paid for them (n may exceed burst: the
// debt is waited off). It returns early with ctx's error.
func (b *Bucket) Wait(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	b.refill(time.Now())
	b.tokens -= float64(n)
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Rate and Burst report the configuration (0 when unlimited).
func (b *Bucket) Rate() float64 {
	if b == nil {
		return 0
	}
	return b.rate
}

// Burst is the bucket's size.
func (b *Bucket) Burst() int {
	if b == nil {
		return 0
	}
	return int(b.burst)
}
