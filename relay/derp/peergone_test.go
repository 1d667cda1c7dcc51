package derp

import (
	"io"
	"testing"
	"time"
)

// TestPeerGoneAfterQueuedPackets: packets from a source still queued at a receiver when the
// source leaves must not leave the receiver unsubscribed, or the source's next departure
// (after it came back) is never announced.
func TestPeerGoneAfterQueuedPackets(t *testing.T) {
	priv, _ := NewPrivateKey()
	s, err := NewServer(priv, Options{WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ak, bk := newPriv(t), newPriv(t)
	b := connectPipe(t, s, bk)
	rb := s.loadSet(bk.Public()).active.Load()
	fromA := func(seed byte) {
		p := newPacket(1)
		p.data()[0] = seed
		p.src = ak.Public()
		s.deliver(nil, bk.Public(), p)
	}
	// next reads b's frames until a packet or a PeerGone; keepalives are skipped.
	next := func() (typ byte, payload []byte) {
		t.Helper()
		b.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			typ, n, err := readFrameHeader(b.br)
			if err != nil {
				t.Fatalf("reading from the receiver: %v", err)
			}
			payload = make([]byte, n)
			if _, err := io.ReadFull(b.br, payload); err != nil {
				t.Fatal(err)
			}
			if typ == frameRecvPacket || typ == framePeerGone {
				return typ, payload
			}
		}
	}
	expect := func(want byte, seed byte) {
		t.Helper()
		typ, payload := next()
		k := ak.Public()
		switch {
		case typ != want:
			t.Fatalf("frame type 0x%02x, want 0x%02x", typ, want)
		case Key(payload[:keyLen]) != k:
			t.Fatalf("frame about another key")
		case want == frameRecvPacket && payload[keyLen] != seed:
			t.Fatalf("packet %d, want %d", payload[keyLen], seed)
		}
	}

	a := connectPipe(t, s, ak)
	fromA(1)
	expect(frameRecvPacket, 1) // b now hears when a leaves
	fromA(2)                   // b does not read: its sender blocks writing this one
	waitFor(t, "the sender to take packet 2", func() bool {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		return !rb.hasWorkLocked()
	})
	fromA(3) // still queued when a leaves
	a.nc.Close()
	<-a.done
	expect(frameRecvPacket, 2)
	expect(frameRecvPacket, 3)
	expect(framePeerGone, 0)

	// a comes back, sends again and leaves again: b hears of it again.
	a = connectPipe(t, s, ak)
	fromA(4)
	expect(frameRecvPacket, 4)
	a.nc.Close()
	<-a.done
	expect(framePeerGone, 0)
}
