package ratelimit

import (
	"context"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var unlimited *Bucket
	if !unlimited.Allow(1<<30) || unlimited.Wait(context.Background(), 1<<30) != nil {
		t.Fatal("a nil bucket limits")
	}
	if New(0, 10) != nil {
		t.Fatal("rate 0 must mean unlimited")
	}
	b := New(1, 3)
	for i := range 3 {
		if !b.Allow(1) {
			t.Fatalf("burst token %d refused", i)
		}
	}
	if b.Allow(1) {
		t.Fatal("token beyond the burst allowed")
	}
	// Refill is computed from elapsed time; pretend a second passed.
	b.last = b.last.Add(-time.Second)
	if !b.Allow(1) || b.Allow(1) {
		t.Fatal("one second should refill exactly one token")
	}
	// Wait pays off a debt; a cancelled context returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx, 100); err == nil {
		t.Fatal("Wait with a large debt and a cancelled context returned nil")
	}
}
