package verify

import (
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"tailscale.com/types/key"
)

// testLogger writes the verifier's log lines into the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// randomKey is a fresh node public key, made by Tailscale's own key package.
func randomKey(t testing.TB) [32]byte {
	t.Helper()
	return raw(key.NewNode().Public())
}

// tsKey is a raw key as Tailscale's type.
func tsKey(raw [32]byte) key.NodePublic {
	var k key.NodePublic
	if err := k.UnmarshalText([]byte("nodekey:" + hex.EncodeToString(raw[:]))); err != nil {
		panic(err)
	}
	return k
}

// fakeClock is a settable clock for cache expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// raw is a Tailscale node key as the plain array the relay passes to Check.
func raw(k key.NodePublic) [32]byte {
	return [32]byte(k.AppendTo(nil))
}
