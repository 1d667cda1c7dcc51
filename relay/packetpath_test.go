package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"tailscale.com/derp"
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

// TestIdleClientsPark: clients that send nothing through a keepalive sweep are parked in
// the server's idle watch with no goroutine of their own (relay/derp idlewatch_linux.go),
// keepalives leave no sender behind, and nothing is lost: packets flow both ways after the
// wait, a frame the client stops sending halfway through, resumed seconds later, arrives
// whole, and a parked client ends when it hangs up, when another part of the server closes
// its connection (here: evicted by newer connections of its key) and when the server closes.
func TestIdleClientsPark(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML+"  keepalive: 1s\n") // a sweep every 125 ms
	st := r.DERP().Stats()
	a := derptest.Connect(t, region, key.NewNode())
	b := derptest.Connect(t, region, key.NewNode())
	rawKey := key.NewNode()
	_, raw := derptest.DialRaw(t, region.Nodes[0], rawKey, nil)

	const clientCode = "derp.(*sclient)."
	parked := func() bool { return st.IdleParked.Load() == 3 && goroutinesIn(clientCode) == 0 }
	waitFor(t, "three idle clients to park with no goroutine", parked)
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
	if n := st.IdleParked.Load(); n != 3 {
		t.Fatalf("%d clients parked after the keepalives, want 3", n)
	}

	for i := range 3 {
		msg := []byte{'a', 'b', byte(i)}
		a.Send(b.Pub(), msg)
		b.ExpectPacket(a.Pub(), msg)
		msg[1] = 'a'
		b.Send(a.Pub(), msg)
		a.ExpectPacket(b.Pub(), msg)
		waitFor(t, "a and b to park again", parked)
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

	waitFor(t, "the raw client to park again", parked)
	// Four newer connections of raw's key (the default cap) evict the parked oldest.
	for range 4 {
		derptest.Connect(t, region, rawKey)
	}
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, raw); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the evicted parked connection stayed open")
	}
	waitFor(t, "the evicted client to leave", func() bool { return st.CurrentConns.Load() == 6 })

	// Close ends parked clients too: each is resumed to find its connection closed.
	waitFor(t, "the clients to park", func() bool { return st.IdleParked.Load() == 6 })

	// Parked clients that hang up leave at once: the end of their stream wakes the watch.
	var hangUps []io.Closer
	for range 20 {
		_, c := derptest.DialRaw(t, region.Nodes[0], key.NewNode(), nil)
		hangUps = append(hangUps, c)
	}
	waitFor(t, "20 more clients to park", func() bool { return st.IdleParked.Load() == 26 })
	for _, c := range hangUps {
		c.Close()
	}
	waitFor(t, "the clients that hung up to leave", func() bool { return st.CurrentConns.Load() == 6 && st.IdleParked.Load() == 6 })

	r.DERP().Close()
	waitFor(t, "every client to end", func() bool { return st.CurrentConns.Load() == 0 && st.IdleParked.Load() == 0 })
}

// numbered is a packet that says who sent it and its place in that sender's sequence.
func numbered(from byte, seq uint32, size int) []byte {
	p := derptest.Pattern(size, from)
	p[0] = from
	binary.BigEndian.PutUint32(p[1:], seq)
	return p
}

// inOrder checks that each sender's packets arrive in the order sent (some may be dropped
// from the head of a full queue) and returns the last number seen from each.
func inOrder(t *testing.T, last map[byte]int64, data []byte) {
	t.Helper()
	from, seq := data[0], int64(binary.BigEndian.Uint32(data[1:]))
	if !bytes.Equal(data[5:], derptest.Pattern(len(data), from)[5:]) {
		t.Fatalf("packet %d from %d: contents differ", seq, from)
	}
	if prev, ok := last[from]; ok && seq <= prev {
		t.Fatalf("packet %d from %d after %d", seq, from, prev)
	}
	last[from] = seq
}

// TestDirectWritesKeepOrder: two clients send to a third at once; packets written directly
// by a sender's reader and packets its sender writes from the queue arrive in each sender's
// order.
func TestDirectWritesKeepOrder(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	dst := derptest.Connect(t, region, key.NewNode())
	const n = 3000
	for id := byte(1); id <= 2; id++ {
		src := derptest.Connect(t, region, key.NewNode())
		go func() {
			for i := range uint32(n) {
				if src.Client.Send(dst.Pub(), numbered(id, i, 200)) != nil {
					return
				}
			}
		}()
	}
	last := map[byte]int64{}
	for last[1] != n-1 || last[2] != n-1 {
		m := dst.Next()
		rp, ok := m.(derp.ReceivedPacket)
		if !ok {
			t.Fatalf("got %T, want a packet", m)
		}
		inOrder(t, last, rp.Data)
	}
	if r.DERP().Stats().DirectWrites.Load() == 0 {
		t.Error("no packet was written directly")
	}
}

// TestDirectWriteLeftovers: a receiver that stops reading fills its socket; what direct
// writes could not hand to the socket is finished by its sender, and when the receiver
// reads again its TLS stream is intact and its packets are in order, the newest last.
func TestDirectWriteLeftovers(t *testing.T) {
	r, region := startRelay(t, selfSignedYAML)
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	lazyKey := key.NewNode()
	lazy, _ := derptest.DialRaw(t, region.Nodes[0], lazyKey, dialer)
	src := derptest.Connect(t, region, key.NewNode())
	// More than the socket's send buffer can grow to (4 MiB at most by default).
	const n = 6000
	for i := range uint32(n) {
		src.Send(lazyKey.Public(), numbered(1, i, 1000))
	}
	st := r.DERP().Stats()
	waitFor(t, "a direct write to leave bytes for the sender", func() bool { return st.DirectLeftovers.Load() > 0 })
	last := map[byte]int64{}
	for last[1] != n-1 {
		m, err := lazy.Recv()
		if err != nil {
			t.Fatalf("receiving after the backlog (got up to %d): %v", last[1], err)
		}
		if rp, ok := m.(derp.ReceivedPacket); ok {
			inOrder(t, last, rp.Data)
		}
	}
	t.Logf("direct writes %d, left to the sender %d, dropped from the queue %d", st.DirectWrites.Load(),
		st.DirectLeftovers.Load(), st.PacketsDropped[3].Load())
}
