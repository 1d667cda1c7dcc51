package derp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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
	idle      *idleReader // under br when the connection is TLS over a socket; else nil
	done      func(error) // a detached connection's end (serveDetached)
	key       Key
	remote    netip.AddrPort
	canMesh   bool
	isProber  bool
	connNum   uint64
	isDup     atomic.Bool
	evicted   atomic.Bool // closed for MaxConnsPerKey; its reader is ending
	preferred atomic.Bool
	queued    budget    // bytes in data and disco (queue.go)
	kaAt      time.Time // when the next KeepAlive is due; guarded by Server.mu

	// The send side, under one lock: the queues, the control frames waiting, and whether
	// a sender runs. Queueing a packet is a lock and a slot in a ring; the queues get
	// their storage with their first packet.
	mu            sync.Mutex
	data, disco   ring // disco gets its own queue so control survives bulk data
	pong          [8]byte
	pongDue       bool // a pong is waiting: pings faster than pongs go out are dropped
	kaDue         bool
	pendingGone   []peerGone
	pendingPres   []peerPresence
	health        *string
	restarting    bool
	sending       bool             // a sender goroutine exists (writing, or parked on wake)
	parked        bool             // the sender waits on wake for work
	idleSweeps    int              // keepalive sweeps the sender stayed parked through
	wake          sync.Cond        // on mu: wakes the parked sender
	closed        bool             // the reader ended or a write failed: nothing more is written
	senderStopped chan struct{}    // closed when the sender ends, if the reader waits for that
	sawSrc        map[Key]struct{} // sources this client got packets from (unregister reads it)
	lastSrc       Key              // the last source added to or found in sawSrc
	haveLastSrc   bool

	dstKey        Key        // the last destination the reader delivered to (setFor)
	dstSet        *clientSet // and its registry entry; reader goroutine only
	notHereTokens float64    // rate limit for PeerGone(NotHere); reader goroutine only
	notHereLast   time.Time

	recvLimit *ratelimit.Bucket // nil: unlimited (and always for mesh peers)

	// Writes: the sender, or another client's reader writing directly (direct.go).
	wmu       sync.Mutex
	wdeadline time.Time // the write deadline in force; under wmu
	direct    *sockConn // nil: no direct writes (not a TLS socket of our listener)
	flushDue  bool      // a direct write left bytes for the sender; under mu
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
		data:          ring{depth: s.opts.QueueDepth},
		disco:         ring{depth: s.opts.QueueDepth},
		notHereTokens: 3,
	}
	if !c.canMesh {
		c.recvLimit = ratelimit.New(float64(s.opts.ClientRate), s.opts.ClientBurst)
	}
	c.queued.limit, c.queued.parent = s.opts.QueueBytes, &s.queued
	c.wake.L = &c.mu
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

// run is the reader loop; it returns when the connection ends (nil for an orderly end), or
// errIdle when the keepalive sweep found the client idle between frames (idleread.go).
// The caller finishes the connection.
func (c *sclient) run(ctx context.Context) error {
	for {
		if c.idle != nil && c.br.Buffered() == 0 {
			c.idle.atBoundary = true
		}
		typ, n, err := readFrameHeader(c.br)
		if err != nil {
			if err == errIdle {
				return err
			}
			return c.ended(err)
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

// ended maps how a read ended to the connection's error: nil for a close by either side.
func (c *sclient) ended(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("derp: %v: reading frame: %w", c.key, err)
}

// end closes the connection when the reader ends, drops what is still queued and waits for
// a running sender, which fails its next write, to give back what it holds.
func (c *sclient) end() {
	c.nc.Close()
	c.mu.Lock()
	c.closed = true
	c.drainLocked()
	var stopped chan struct{}
	if c.sending {
		stopped = make(chan struct{})
		c.senderStopped = stopped
		c.wake.Signal() // a parked sender ends now
	}
	c.mu.Unlock()
	if stopped != nil {
		<-stopped
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
		if err := readSmall(c.br, data[:]); err != nil {
			return err
		}
		if err := discard(c.br, n-8); err != nil {
			return err
		}
		c.s.stats.GotPing.Add(1)
		c.mu.Lock()
		if !c.pongDue {
			c.pong, c.pongDue = data, true
			c.startSenderLocked()
		}
		c.mu.Unlock()
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
		if err := readSmall(c.br, k[:]); err != nil {
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
	if err := readSmall(c.br, dst[:]); err != nil {
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
	if err := readSmall(c.br, keys[:]); err != nil {
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

func (c *sclient) queueGone(k Key, reason byte) {
	c.mu.Lock()
	c.pendingGone = append(c.pendingGone, peerGone{k, reason})
	c.startSenderLocked()
	c.mu.Unlock()
}

func (c *sclient) queuePresent(p peerPresence) {
	c.mu.Lock()
	c.pendingPres = append(c.pendingPres, p)
	c.startSenderLocked()
	c.mu.Unlock()
}

func (c *sclient) queueHealth(problem string) {
	c.mu.Lock()
	c.health = &problem
	c.startSenderLocked()
	c.mu.Unlock()
}

func (c *sclient) queueRestarting() {
	c.mu.Lock()
	c.restarting = true
	c.startSenderLocked()
	c.mu.Unlock()
}
