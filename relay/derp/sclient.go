package derp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/edgerelay/relay/ratelimit"
)

// sclient is one connection from a client: a reader loop (the caller's goroutine) and a
// sender that owns all writes to the socket. The sender is a goroutine that exists only
// while there is something to write, so an idle connection costs one goroutine, not two.
type sclient struct {
	s         *Server
	nc        net.Conn
	br        *bufio.Reader
	key       Key
	remote    netip.AddrPort
	canMesh   bool
	isProber  bool
	connNum   uint64
	isDup     atomic.Bool
	evicted   atomic.Bool // closed for MaxConnsPerKey; its reader is ending
	preferred atomic.Bool

	done   chan struct{} // closed when the reader loop ends
	dataQ  chan packet
	discoQ chan packet   // disco gets its own queue so control survives bulk data
	queued budget        // bytes in dataQ and discoQ (queue.go)
	pongQ  chan [8]byte  // depth 1: pings faster than pongs go out are dropped
	notify chan struct{} // depth 1: pending control frames below are waiting
	kaDue  atomic.Bool   // a KeepAlive frame is due
	ka     *time.Timer   // fires every KeepAlive interval (plus per-connection jitter)

	// sender state: at most one sender goroutine runs; sendActive mirrors sending so the
	// packet path can skip the lock when a sender is already on its way.
	sendActive atomic.Bool
	sendMu     sync.Mutex
	sendCond   *sync.Cond // signalled when a sender ends
	sending    bool
	closed     bool // the reader has ended: start no more senders

	mu          sync.Mutex // guards the pending control frames
	pendingGone []peerGone
	pendingPres []peerPresence
	health      *string
	restarting  bool

	sawSrc map[Key]struct{} // owned by the send loop; read by unregister after it ends

	notHereTokens float64 // rate limit for PeerGone(NotHere); reader goroutine only
	notHereLast   time.Time

	recvLimit *ratelimit.Bucket // nil: unlimited (and always for mesh peers)
}

type peerGone struct {
	key    Key
	reason byte
}

type peerPresence struct {
	key   Key
	addr  netip.AddrPort
	flags byte
}

func (s *Server) newClient(nc net.Conn, br *bufio.Reader, h hello, remote netip.AddrPort) *sclient {
	c := &sclient{
		s:             s,
		nc:            nc,
		br:            br,
		key:           h.key,
		remote:        remote,
		canMesh:       s.isMeshPeer(h),
		isProber:      h.isProber,
		connNum:       s.nextConn.Add(1),
		done:          make(chan struct{}),
		dataQ:         make(chan packet, s.opts.QueueDepth),
		discoQ:        make(chan packet, s.opts.QueueDepth),
		pongQ:         make(chan [8]byte, 1),
		notify:        make(chan struct{}, 1),
		sawSrc:        map[Key]struct{}{},
		notHereTokens: 3,
	}
	if !c.canMesh {
		c.recvLimit = ratelimit.New(float64(s.opts.ClientRate), s.opts.ClientBurst)
	}
	c.queued.limit, c.queued.parent = s.opts.QueueBytes, &s.queued
	c.sendCond = sync.NewCond(&c.sendMu)
	return c
}

// serverInfo is what ServerInfo tells this client, including its send budget.
func (c *sclient) serverInfo() serverInfo {
	return serverInfo{
		Version:                   ProtocolVersion,
		TokenBucketBytesPerSecond: int(c.recvLimit.Rate()),
		TokenBucketBytesBurst:     c.recvLimit.Burst(),
	}
}

func (c *sclient) presence() peerPresence {
	var flags byte
	if c.canMesh {
		flags |= peerPresentIsMeshPeer
	}
	if c.isProber {
		flags |= peerPresentIsProber
	}
	if flags == 0 {
		flags = peerPresentIsRegular
	}
	return peerPresence{key: c.key, addr: c.remote, flags: flags}
}

// run is the reader loop; it returns when the connection ends.
func (c *sclient) run(ctx context.Context) error {
	interval := c.s.opts.KeepAlive + rand.N(5*time.Second)
	c.ka = time.AfterFunc(interval, func() {
		select {
		case <-c.done:
			return // the connection ended: let the timer go
		default:
		}
		c.kaDue.Store(true)
		c.kick()
		c.ka.Reset(interval)
	})
	defer func() {
		close(c.done)
		c.nc.Close()
		c.ka.Stop()
		c.stopSender()
		c.drainQueues()
	}()
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	for {
		typ, n, err := readFrameHeader(c.br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("derp: %v: reading frame: %w", c.key, err)
		}
		if c.isDup.Load() {
			c.s.noteActive(c)
		}
		// Over its budget, a client waits here: TCP pushes back, nothing is dropped.
		if err := c.recvLimit.Wait(ctx, int(min(n, keyLen+MaxPacketSize))); err != nil {
			return nil
		}
		if err := c.handleFrame(typ, n); err != nil {
			return fmt.Errorf("derp: %v: %w", c.key, err)
		}
	}
}

func (c *sclient) handleFrame(typ byte, n uint32) error {
	switch typ {
	case frameSendPacket:
		return c.handleSendPacket(n)
	case frameForwardPacket:
		return c.handleForwardPacket(n)
	case frameNotePreferred:
		if n != 1 {
			return fmt.Errorf("note-preferred frame: length %d, want 1", n)
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		c.setPreferred(b != 0)
	case framePing:
		if n < 8 || n > maxPingLen {
			return fmt.Errorf("ping frame: length %d outside 8..%d", n, maxPingLen)
		}
		var data [8]byte
		if _, err := io.ReadFull(c.br, data[:]); err != nil {
			return err
		}
		if err := discard(c.br, n-8); err != nil {
			return err
		}
		c.s.stats.GotPing.Add(1)
		select {
		case c.pongQ <- data:
			c.kick()
		default:
		}
	case frameWatchConns:
		if n != 0 {
			return fmt.Errorf("watch-conns frame: length %d, want 0", n)
		}
		if !c.canMesh {
			return errors.New("watch-conns frame: insufficient permissions (no mesh key)")
		}
		if c.key != c.s.pub { // our own mesh client looping back: nothing to watch
			c.s.addWatcher(c)
		}
	case frameClosePeer:
		if n != keyLen {
			return fmt.Errorf("close-peer frame: length %d, want %d", n, keyLen)
		}
		var k Key
		if _, err := io.ReadFull(c.br, k[:]); err != nil {
			return err
		}
		if !c.canMesh {
			return errors.New("close-peer frame: insufficient permissions (no mesh key)")
		}
		c.s.closePeer(k)
	default:
		// Unknown and client-irrelevant types (e.g. Pong) are skipped, within reason.
		if n > maxUnknownFrameLen {
			return fmt.Errorf("frame type 0x%02x: length %d over limit %d", typ, n, maxUnknownFrameLen)
		}
		return discard(c.br, n)
	}
	return nil
}

func (c *sclient) handleSendPacket(n uint32) error {
	if n < keyLen || n-keyLen > MaxPacketSize {
		return fmt.Errorf("send-packet frame: length %d outside %d..%d", n, keyLen, keyLen+MaxPacketSize)
	}
	var dst Key
	if _, err := io.ReadFull(c.br, dst[:]); err != nil {
		return err
	}
	p := newPacket(int(n - keyLen))
	if _, err := io.ReadFull(c.br, p.data()); err != nil {
		p.release()
		return err
	}
	p.src = c.key
	p.disco = looksLikeDisco(p.data())
	st := &c.s.stats
	st.PacketsRecv.Add(1)
	st.BytesRecv.Add(int64(p.len()))
	if p.disco {
		st.DiscoPacketsRecv.Add(1)
	}
	c.s.deliver(c, dst, p)
	return nil
}

// handleForwardPacket takes a packet a mesh peer relays for one of our clients. It is
// delivered locally only: never forwarded again.
func (c *sclient) handleForwardPacket(n uint32) error {
	if n < 2*keyLen || n-2*keyLen > MaxPacketSize {
		return fmt.Errorf("forward-packet frame: length %d outside %d..%d", n, 2*keyLen, 2*keyLen+MaxPacketSize)
	}
	if !c.canMesh {
		return errors.New("forward-packet frame: insufficient permissions (no mesh key)")
	}
	var keys [2 * keyLen]byte
	if _, err := io.ReadFull(c.br, keys[:]); err != nil {
		return err
	}
	p := newPacket(int(n - 2*keyLen))
	if _, err := io.ReadFull(c.br, p.data()); err != nil {
		p.release()
		return err
	}
	copy(p.src[:], keys[:keyLen])
	p.disco = looksLikeDisco(p.data())
	c.s.stats.PacketsForwardedIn.Add(1)
	var dst Key
	copy(dst[:], keys[keyLen:])
	if set := c.s.loadSet(dst); set != nil {
		if r := set.active.Load(); r != nil {
			r.enqueue(p)
			return nil
		}
	}
	c.s.stats.drop(dropUnknownDestOnFwd, p.len())
	if p.disco {
		c.noteNotHere(dst)
	}
	p.release()
	return nil
}

func (c *sclient) setPreferred(v bool) {
	if c.preferred.Swap(v) == v {
		return
	}
	if v {
		c.s.stats.CurrentHome.Add(1)
		c.s.stats.HomeMovesIn.Add(1)
	} else {
		c.s.stats.CurrentHome.Add(-1)
		c.s.stats.HomeMovesOut.Add(1)
	}
}

// noteNotHere tells the sender a disco packet's destination is unknown, at most once a
// second with a burst of 3: clients drop routes on it, so flooding it causes flapping.
func (c *sclient) noteNotHere(dst Key) {
	now := time.Now()
	c.notHereTokens = min(3, c.notHereTokens+now.Sub(c.notHereLast).Seconds())
	c.notHereLast = now
	if c.notHereTokens < 1 {
		return
	}
	c.notHereTokens--
	c.queueGone(dst, PeerGoneNotHere)
}

func (c *sclient) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
	c.kick()
}

func (c *sclient) queueGone(k Key, reason byte) {
	c.mu.Lock()
	c.pendingGone = append(c.pendingGone, peerGone{k, reason})
	c.mu.Unlock()
	c.signal()
}

func (c *sclient) queuePresent(p peerPresence) {
	c.mu.Lock()
	c.pendingPres = append(c.pendingPres, p)
	c.mu.Unlock()
	c.signal()
}

func (c *sclient) queueHealth(problem string) {
	c.mu.Lock()
	c.health = &problem
	c.mu.Unlock()
	c.signal()
}

func (c *sclient) queueRestarting() {
	c.mu.Lock()
	c.restarting = true
	c.mu.Unlock()
	c.signal()
}

// writerPool holds the send loops' buffered writers: a connection holds one only while it
// has frames to write, so idle connections cost no write buffer.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// kick makes sure a sender runs to write what was just queued.
func (c *sclient) kick() {
	if c.sendActive.Load() {
		return // the running sender re-checks the queues before it ends
	}
	c.sendMu.Lock()
	if c.sending || c.closed {
		c.sendMu.Unlock()
		return
	}
	c.sending = true
	c.sendActive.Store(true)
	c.sendMu.Unlock()
	go c.send()
}

// hasWork reports whether anything is waiting to be written.
func (c *sclient) hasWork() bool {
	return len(c.dataQ) > 0 || len(c.discoQ) > 0 || len(c.pongQ) > 0 || len(c.notify) > 0 || c.kaDue.Load()
}

// stopSender keeps new senders from starting and waits for a running one to end.
func (c *sclient) stopSender() {
	c.sendMu.Lock()
	c.closed = true
	for c.sending {
		c.sendCond.Wait()
	}
	c.sendMu.Unlock()
}

// send owns every write to the socket after ServerInfo while it runs: it writes whatever
// is ready, flushes once, and repeats until nothing is left. A pooled writer is held only
// meanwhile, so idle connections hold no write buffer and no sender goroutine.
func (c *sclient) send() {
	timeout := c.s.opts.WriteTimeout
	if c.canMesh {
		timeout = meshWriteTimeout
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c.nc)
	var err error
	for err == nil && c.hasWork() {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		if err = c.writeReady(bw); err == nil {
			err = bw.Flush()
		}
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.s.stats.WriteTimeouts.Add(1)
		}
		if !errors.Is(err, errRestarting) {
			c.s.log.Debug("derp: write failed, closing", "client", c.key.String(), "err", err)
		}
		c.nc.Close() // ends the reader, which stops everything else
	}
	c.sendMu.Lock()
	c.sending = false
	c.sendActive.Store(false)
	c.sendCond.Broadcast()
	c.sendMu.Unlock()
	// Work queued after the last check but before sendActive went false found a sender
	// still active and did not start one: pick it up.
	if err == nil && c.hasWork() {
		c.kick()
	}
}

// writeReady writes every frame that is ready without blocking.
func (c *sclient) writeReady(bw *bufio.Writer) error {
	if c.kaDue.Swap(false) {
		if err := writeFrameHeader(bw, frameKeepAlive, 0); err != nil {
			return err
		}
	}
	for {
		var err error
		select {
		case p := <-c.discoQ:
			err = c.writePacket(bw, p)
		case p := <-c.dataQ:
			err = c.writePacket(bw, p)
		case d := <-c.pongQ:
			err = c.writePong(bw, d)
		case <-c.notify:
			err = c.writePending(bw)
		default:
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *sclient) writePacket(bw *bufio.Writer, p packet) error {
	defer p.release()
	defer c.queued.give(p.cost()) // once written: the bytes were held until then
	if _, seen := c.sawSrc[p.src]; !seen {
		c.sawSrc[p.src] = struct{}{}
		c.s.notePeerSend(p.src, c)
	}
	if err := writeFrame(bw, frameRecvPacket, p.src[:], p.data()); err != nil {
		c.s.stats.drop(dropWriteError, p.len())
		return err
	}
	c.s.stats.PacketsSent.Add(1)
	c.s.stats.BytesSent.Add(int64(p.len()))
	return nil
}

func (c *sclient) writePong(bw *bufio.Writer, d [8]byte) error {
	c.s.stats.SentPong.Add(1)
	return writeFrame(bw, framePong, d[:])
}

var errRestarting = errors.New("server restarting")

// writePending writes queued control frames: PeerGone, PeerPresent, Health, Restarting.
func (c *sclient) writePending(bw *bufio.Writer) error {
	c.mu.Lock()
	gone, pres, health, restarting := c.pendingGone, c.pendingPres, c.health, c.restarting
	c.pendingGone, c.pendingPres, c.health = nil, nil, nil
	c.mu.Unlock()
	for _, g := range gone {
		if g.reason == PeerGoneNotHere {
			c.s.stats.PeerGoneNotHere.Add(1)
		} else {
			c.s.stats.PeerGoneDisconnect.Add(1)
		}
		if err := writeFrame(bw, framePeerGone, g.key[:], []byte{g.reason}); err != nil {
			return err
		}
	}
	for _, p := range pres {
		var b [peerPresentLen]byte
		copy(b[:], p.key[:])
		a16 := p.addr.Addr().As16() // IPv4 goes as ::ffff:a.b.c.d
		copy(b[keyLen:], a16[:])
		binary.BigEndian.PutUint16(b[keyLen+16:], p.addr.Port())
		b[keyLen+18] = p.flags
		if err := writeFrame(bw, framePeerPresent, b[:]); err != nil {
			return err
		}
	}
	if health != nil {
		if err := writeFrame(bw, frameHealth, []byte(*health)); err != nil {
			return err
		}
	}
	if restarting {
		var b [8]byte
		binary.BigEndian.PutUint32(b[:4], 1000)  // reconnect in 1 s
		binary.BigEndian.PutUint32(b[4:], 60000) // keep trying for a minute
		if err := writeFrame(bw, frameRestarting, b[:]); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return errRestarting
	}
	return nil
}
