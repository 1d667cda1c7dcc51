package derp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"sync"
)

// The send side of a client connection. Whoever queues something (a packet from another
// client's reader, a control frame, the keepalive sweep) makes sure a sender runs: it starts
// one, or wakes the one parked on the client's lock. The sender takes what is waiting in
// batches under that lock, writes a batch and flushes once, and parks when it finds nothing
// left. A sender lives as long as its client gets packets: a goroutine per packet would
// grow a fresh stack for the TLS write each time (copying it costs more than the write's
// own code). The keepalive sweep retires senders parked through a whole sweep, so an idle
// connection has no sender and holds no write buffer; a sender that wrote only control
// frames (the keepalive itself) ends when it finds nothing more.

// maxBatch bounds the packets a sender takes out of the queues at once: the rest stay
// queued, where newer packets can push them out.
const maxBatch = 16

// batch is what a sender took out of the client's state to write.
type batch struct {
	pkts       [maxBatch]packet
	newSrc     [maxBatch]bool // the first packet from this source: subscribe to its departure
	n          int
	keepAlive  bool
	flush      bool // a direct write left bytes under TLS (direct.go)
	pong       *[8]byte
	pongData   [8]byte
	gone       []peerGone
	pres       []peerPresence
	health     *string
	restarting bool
}

// writerPool holds the senders' buffered writers: a connection holds one only while it has
// frames to write, so idle connections cost no write buffer.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// startSenderLocked makes sure a sender will find what was just queued: it wakes the
// parked one or starts one, unless the connection is done. c.mu is held.
func (c *sclient) startSenderLocked() {
	switch {
	case c.closed:
	case c.parked:
		c.parked = false
		c.wake.Signal()
	case !c.sending:
		c.sending = true
		go c.send()
	}
}

// retireSenderLocked ends a sender that stayed parked since the last keepalive sweep (the
// sweep calls it with Server.mu and c.mu held).
func (c *sclient) retireSenderLocked() {
	if !c.parked {
		c.idleSweeps = 0
		return
	}
	if c.idleSweeps++; c.idleSweeps > 1 {
		c.parked = false
		c.wake.Signal()
	}
}

// sendIdle reports whether nothing is being or waiting to be written (or nothing will be).
func (c *sclient) sendIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || (!c.sending || c.parked) && !c.hasWorkLocked()
}

func (c *sclient) hasWorkLocked() bool {
	return c.data.len() > 0 || c.disco.len() > 0 || c.kaDue || c.flushDue || c.pongDue || len(c.pendingGone) > 0 ||
		len(c.pendingPres) > 0 || c.health != nil || c.restarting
}

// noteSrcLocked records that c gets packets from src and reports whether src is new to it
// (the sender then subscribes c to src's departure).
func (c *sclient) noteSrcLocked(src Key) bool {
	if c.haveLastSrc && src == c.lastSrc { // most packets come from one source
		return false
	}
	_, seen := c.sawSrc[src]
	if !seen {
		if c.sawSrc == nil {
			c.sawSrc = map[Key]struct{}{}
		}
		c.sawSrc[src] = struct{}{}
	}
	c.lastSrc, c.haveLastSrc = src, true
	return !seen
}

// takeLocked moves what waits into b (disco packets first); false when there is nothing.
func (c *sclient) takeLocked(b *batch) bool {
	if !c.hasWorkLocked() {
		return false
	}
	c.idleSweeps = 0
	b.n = 0
	for _, q := range []*ring{&c.disco, &c.data} {
		for b.n < maxBatch {
			p, ok := q.take()
			if !ok {
				break
			}
			b.pkts[b.n], b.newSrc[b.n] = p, c.noteSrcLocked(p.src)
			b.n++
		}
	}
	b.keepAlive, c.kaDue = c.kaDue, false
	b.flush, c.flushDue = c.flushDue, false
	b.pong = nil
	if c.pongDue {
		b.pongData, b.pong, c.pongDue = c.pong, &b.pongData, false
	}
	b.gone, b.pres, b.health, b.restarting = c.pendingGone, c.pendingPres, c.health, c.restarting
	c.pendingGone, c.pendingPres, c.health, c.restarting = nil, nil, nil, false
	return true
}

// send writes batches, parking in between, until the connection is done or the sweep
// retires it. A write error or timeout closes the connection, which ends the reader.
func (c *sclient) send() {
	var bw *bufio.Writer
	var b batch
	var err error
	wrotePackets := false
	c.mu.Lock()
	for {
		if err == nil && !c.closed && c.takeLocked(&b) {
			c.mu.Unlock()
			wrotePackets = wrotePackets || b.n > 0
			c.wmu.Lock() // a direct write (direct.go) may be in progress
			c.moveWriteDeadline()
			if b.flush {
				err = c.direct.flush()
			}
			if err != nil {
				c.dropBatch(&b, err)
			} else if b.lone() {
				err = c.writeLone(&b)
			} else {
				if bw == nil {
					bw = writerPool.Get().(*bufio.Writer)
					bw.Reset(c.nc)
				}
				if err = c.writeBatch(bw, &b); err == nil {
					err = bw.Flush()
				}
			}
			c.wmu.Unlock()
			c.mu.Lock()
			continue
		}
		if bw != nil { // idle connections hold no write buffer
			bw.Reset(nil)
			writerPool.Put(bw)
			bw = nil
		}
		// A sender that wrote only control frames (a keepalive, a pong) ends at once: it
		// would hold its stack through two sweeps for traffic that is not coming.
		if err != nil || c.closed || c.idleSweeps > 1 || !wrotePackets {
			break
		}
		c.parked = true
		c.wake.Wait() // until startSenderLocked, retireSenderLocked or end
	}
	c.closed = c.closed || err != nil
	c.sending, c.parked, c.idleSweeps = false, false, 0
	if c.senderStopped != nil {
		close(c.senderStopped)
	}
	c.mu.Unlock()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.s.stats.WriteTimeouts.Add(1)
		}
		if !errors.Is(err, errRestarting) {
			c.s.log.Debug("derp: write failed, closing", "client", c.key.String(), "err", err)
		}
		c.closeConn() // ends the reader, which drops what is still queued
	}
}

// lone reports whether b is one packet and nothing else: the usual batch below saturation.
func (b *batch) lone() bool {
	return b.n == 1 && !b.keepAlive && b.pong == nil && b.gone == nil && b.pres == nil && b.health == nil && !b.restarting
}

// writeLone writes a lone packet's frame, built in its headroom, with one Write: one TLS
// record, no copy through a buffered writer.
func (c *sclient) writeLone(b *batch) error {
	p := b.pkts[0]
	b.pkts[0] = nil
	if b.newSrc[0] {
		c.s.notePeerSend(p.src, c)
	}
	_, err := c.nc.Write(p.recvFrame())
	c.written(p, err)
	return err
}

// written counts p as sent or dropped, gives back what it held in the queue budget and
// releases it.
func (c *sclient) written(p packet, err error) {
	st := &c.s.stats
	if err == nil {
		st.PacketsSent.Add(1)
		st.BytesSent.Add(int64(p.len()))
	} else {
		st.drop(dropWriteError, p.len())
	}
	c.queued.give(p.cost())
	p.release()
}

// dropBatch releases b's packets, counted as lost to err.
func (c *sclient) dropBatch(b *batch, err error) {
	for i := range b.n {
		p := b.pkts[i]
		b.pkts[i] = nil
		c.written(p, err)
	}
}

// writeBatch writes b's frames into bw. Every packet of b is released, written or not; the
// bytes it held in the queue budget are given back once it is written.
func (c *sclient) writeBatch(bw *bufio.Writer, b *batch) error {
	var err error
	if b.keepAlive {
		err = writeFrameHeader(bw, frameKeepAlive, 0)
	}
	if b.pong != nil && err == nil {
		c.s.stats.SentPong.Add(1)
		err = writeFrame(bw, framePong, b.pong[:])
	}
	for i := range b.n {
		p := b.pkts[i]
		b.pkts[i] = nil
		if err == nil {
			if b.newSrc[i] {
				c.s.notePeerSend(p.src, c)
			}
			_, err = bw.Write(p.recvFrame())
		}
		c.written(p, err)
	}
	if err != nil {
		return err
	}
	return c.writePending(bw, b)
}

var errRestarting = errors.New("server restarting")

// writePending writes b's control frames: PeerGone, PeerPresent, Health, Restarting.
func (c *sclient) writePending(bw *bufio.Writer, b *batch) error {
	for _, g := range b.gone {
		if g.reason == PeerGoneNotHere {
			c.s.stats.PeerGoneNotHere.Add(1)
		} else {
			c.s.stats.PeerGoneDisconnect.Add(1)
		}
		if err := writeFrame(bw, framePeerGone, g.key[:], []byte{g.reason}); err != nil {
			return err
		}
	}
	for _, p := range b.pres {
		var f [peerPresentLen]byte
		copy(f[:], p.key[:])
		a16 := p.addr.Addr().As16() // IPv4 goes as ::ffff:a.b.c.d
		copy(f[keyLen:], a16[:])
		binary.BigEndian.PutUint16(f[keyLen+16:], p.addr.Port())
		f[keyLen+18] = p.flags
		if err := writeFrame(bw, framePeerPresent, f[:]); err != nil {
			return err
		}
	}
	if b.health != nil {
		if err := writeFrame(bw, frameHealth, []byte(*b.health)); err != nil {
			return err
		}
	}
	if b.restarting {
		var f [8]byte
		binary.BigEndian.PutUint32(f[:4], 1000)  // reconnect in 1 s
		binary.BigEndian.PutUint32(f[4:], 60000) // keep trying for a minute
		if err := writeFrame(bw, frameRestarting, f[:]); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return errRestarting
	}
	return nil
}
