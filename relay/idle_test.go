package relay_test

import (
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/relay/derptest"
)

// goroutinesIn counts this process's goroutines with fn on their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), fn+"(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestIdleClientsWaitShallow: clients that send nothing through a keepalive sweep are
// handed to small waiter goroutines (relay/derp idleread.go), keepalives leave no sender
// behind, and nothing is lost: packets flow both ways after the wait, and a frame the
// client stops sending halfway through, resumed seconds later, arrives whole.
func TestIdleClientsWaitShallow(t *testing.T) {
	_, region := startRelay(t, selfSignedYAML+"  keepalive: 1s\n") // a sweep every 125 ms
	a := derptest.Connect(t, region, key.NewNode())
	b := derptest.Connect(t, region, key.NewNode())
	rawKey := key.NewNode()
	_, raw := derptest.DialRaw(t, region.Nodes[0], rawKey, nil)

	const waiter = "derp.(*sclient).waitDetached"
	waitFor(t, "three idle readers to wait in small goroutines", func() bool { return goroutinesIn(waiter) == 3 })
	// Through several keepalives (one a second), which the sweep sends from senders that
	// end when they have written them: a sender that stayed would be seen in a quarter of
	// the samples (it parks through two sweeps, 250 ms).
	seen := 0
	for range 100 {
		if goroutinesIn("derp.(*sclient).send") > 0 {
			seen++
		}
		time.Sleep(25 * time.Millisecond)
	}
	if seen > 10 {
		t.Errorf("a sender was running in %d of 100 samples while only keepalives were sent", seen)
	}
	if n := goroutinesIn(waiter); n != 3 {
		t.Fatalf("%d waiters after the keepalives, want 3", n)
	}

	for i := range 3 {
		msg := []byte{'a', 'b', byte(i)}
		a.Send(b.Pub(), msg)
		b.ExpectPacket(a.Pub(), msg)
		msg[1] = 'a'
		b.Send(a.Pub(), msg)
		a.ExpectPacket(b.Pub(), msg)
		waitFor(t, "a and b to wait again", func() bool { return goroutinesIn(waiter) == 3 })
	}

	// A SendPacket frame to a, cut after the frame header and 10 bytes of a's key.
	payload := derptest.Pattern(1000, 7)
	dst := a.Pub().Raw32()
	frame := binary.BigEndian.AppendUint32([]byte{0x04}, uint32(len(dst)+len(payload)))
	frame = append(append(frame, dst[:]...), payload...)
	if _, err := raw.Write(frame[:15]); err != nil {
		t.Fatal(err)
	}
	// The stalled reader is interrupted by the sweep and waits where it is, mid-frame.
	waitFor(t, "the stalled reader to wait in place", func() bool { return goroutinesIn("derp.(*idleReader).waitInPlace") == 1 })
	if _, err := raw.Write(frame[15:]); err != nil {
		t.Fatal(err)
	}
	a.ExpectPacket(rawKey.Public(), payload)
}
