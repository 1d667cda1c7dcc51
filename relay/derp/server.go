package derp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Server; zero values take the defaults in proto.go.
type Options struct {
	KeepAlive        time.Duration
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	// QueueDepth bounds each of a client's two queues (data, disco) in packets; QueueBytes
	// bounds both together in bytes (at least one largest packet), and QueueBytesTotal
	// bounds every queue of the server (0: DefaultQueueBytesTotal, from the memory the box
	// has). Over a bound the oldest packets are dropped, counted by reason.
	QueueDepth      int
	QueueBytes      int64
	QueueBytesTotal int64
	// MaxConnsPerKey caps the connections of one key (mesh peers aside): a newcomer over the
	// cap closes the one that has been quiet longest. Tailscale clients hold one
	// connection per region, two for a moment while they reconnect.
	MaxConnsPerKey int
	// ClientRate and ClientBurst, when set, limit what each non-mesh client may send in
	// bytes per second. The reader waits rather than drops (TCP pushes back), and
	// ServerInfo tells clients so they pace themselves.
	ClientRate  int
	ClientBurst int
	// MeshKey, when set, lets relays holding the same key forward packets and watch
	// connections.
	MeshKey MeshKey
	// Verify, when set, admits or refuses a client key before ServerInfo is sent. Mesh peers
	// are not verified. A non-nil error refuses the client and is logged.
	Verify func(ctx context.Context, key Key, source netip.Addr) error
	// MaxClients caps connections other than mesh peers (0 = no cap). The relay's listener
	// caps TCP connections before TLS; this cap, after the handshake, is what keeps a
	// full relay reachable for the other nodes of its region.
	MaxClients int
	Logger     *slog.Logger
}

// Validate reports options no server can run with (zero values are defaults, not errors).
func (o Options) Validate() error {
	switch {
	case o.QueueDepth < 0 || o.MaxConnsPerKey < 0 || o.MaxClients < 0 || o.ClientRate < 0 || o.ClientBurst < 0:
		return errors.New("derp: queue depth, connections per key, max clients and client rate must not be negative")
	case o.QueueBytes != 0 && o.QueueBytes < MaxPacketSize:
		return fmt.Errorf("derp: queue bytes %d cannot hold one largest packet (%d bytes)", o.QueueBytes, MaxPacketSize)
	case o.QueueBytesTotal != 0 && o.QueueBytesTotal < max(o.QueueBytes, MaxPacketSize):
		return fmt.Errorf("derp: total queue bytes %d below one client's (%d)", o.QueueBytesTotal, max(o.QueueBytes, MaxPacketSize))
	}
	return nil
}

// Server is a DERP server: it owns the registry of connected clients and relays packets
// between them. Connections reach it through ServeHTTP (or HandleConn for raw DERP).
type Server struct {
	priv     PrivateKey
	pub      Key
	opts     Options
	log      *slog.Logger
	metaCert []byte
	stats    Stats
	nextConn atomic.Uint64
	queued   budget // bytes in every queue (queue.go)

	// clients maps a key to its *clientSet. Lookups on the packet path are lock-free;
	// changes happen under mu.
	clients sync.Map

	mu       sync.Mutex
	conns    map[*sclient]struct{}         // every registered connection
	regular  int                           // registered connections that are not mesh peers
	sentTo   map[Key]map[*sclient]struct{} // src → receivers to tell when src leaves
	watchers map[*sclient]struct{}         // mesh peers subscribed to presence changes
	health   string                        // sent to clients as a Health frame
	refusals *refusalLog
	closing  bool

	mesh meshState // keys reachable through other relays of the region (mesh.go)

	kaTimer   *time.Timer // the keepalive sweep (keepAliveSweep)
	idleWatch idleWatch   // idle readers parked without a goroutine
}

// clientSet is every connection of one key. With duplicates, the one that most recently
// sent a frame (or connected) is active and gets the packets; the others stay open.
type clientSet struct {
	active atomic.Pointer[sclient]
	conns  []*sclient  // guarded by Server.mu; most recently active last
	gone   atomic.Bool // left the registry: a cached pointer to it is stale
}

// NewServer returns a server with the given private key.
func NewServer(priv PrivateKey, opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = defaultKeepAlive
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = defaultWriteTimeout
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = defaultHandshakeTimeout
	}
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = defaultQueueDepth
	}
	if opts.QueueBytes <= 0 {
		// What a full pair of queues of ordinary packets holds: depth binds first for them,
		// bytes for large ones.
		opts.QueueBytes = max(2*int64(opts.QueueDepth)*pooledSize, MaxPacketSize)
	}
	if opts.QueueBytesTotal <= 0 {
		opts.QueueBytesTotal = max(DefaultQueueBytesTotal(), opts.QueueBytes)
	}
	if opts.MaxConnsPerKey <= 0 {
		opts.MaxConnsPerKey = defaultMaxConnsPerKey
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		priv:     priv,
		pub:      priv.Public(),
		opts:     opts,
		log:      log,
		conns:    map[*sclient]struct{}{},
		sentTo:   map[Key]map[*sclient]struct{}{},
		watchers: map[*sclient]struct{}{},
		refusals: newRefusalLog(log),
	}
	s.queued.limit = opts.QueueBytesTotal
	s.idleWatch.gauge = &s.stats.IdleParked
	s.kaTimer = time.AfterFunc(s.keepAliveEvery(), s.keepAliveSweep)
	var err error
	if s.metaCert, err = newMetaCert(s.pub); err != nil {
		return nil, fmt.Errorf("derp: meta cert: %w", err)
	}
	return s, nil
}

// PublicKey is the server's public key, as clients see it.
func (s *Server) PublicKey() Key { return s.pub }

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// QueuedBytes is what all queues hold now, and the budget they share.
func (s *Server) QueuedBytes() (used, limit int64) { return s.queued.used.Load(), s.queued.limit }

// SetHealth sets the problem text sent to every client ("" = healthy).
func (s *Server) SetHealth(problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.health == problem {
		return
	}
	s.health = problem
	for c := range s.conns {
		c.queueHealth(problem)
	}
}

var (
	errClosing = errors.New("derp: server is shutting down")
	errFull    = errors.New("derp: max_clients reached")
)

// register adds c to the registry and tells watchers.
func (s *Server) register(c *sclient) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errClosing
	}
	if c.canMesh {
		s.mesh.noteAddr(c.remote.Addr())
	} else {
		if s.opts.MaxClients > 0 && s.regular >= s.opts.MaxClients {
			s.stats.RejectedFull.Add(1)
			return errFull
		}
		s.regular++
	}
	s.conns[c] = struct{}{}
	c.kaAt = time.Now().Add(s.opts.KeepAlive + rand.N(s.keepAliveEvery()))
	s.stats.CurrentConns.Add(1)
	set := s.loadSet(c.key)
	if set == nil {
		set = &clientSet{}
		s.clients.Store(c.key, set)
	}
	set.conns = append(set.conns, c)
	if !c.canMesh {
		s.capDupsLocked(set)
	}
	if len(set.conns) > 1 {
		if len(set.conns) == 2 {
			s.stats.DupKeys.Add(1)
			set.conns[0].isDup.Store(true)
		}
		c.isDup.Store(true)
	}
	set.active.Store(c) // the newest connection gets the traffic at once
	for w := range s.watchers {
		w.queuePresent(c.presence())
	}
	if s.health != "" {
		c.queueHealth(s.health)
	}
	return nil
}

// capDupsLocked closes the connections of a key beyond MaxConnsPerKey, quietest first (the
// set is ordered by activity). They leave the set when their readers end.
func (s *Server) capDupsLocked(set *clientSet) {
	live := 0
	for _, o := range set.conns {
		if !o.evicted.Load() {
			live++
		}
	}
	for _, o := range set.conns {
		if live <= s.opts.MaxConnsPerKey {
			return
		}
		if o.evicted.Swap(true) {
			continue
		}
		live--
		s.stats.DupEvicted.Add(1)
		go o.closeConn() // a TLS close may wait on the peer; never under s.mu
	}
}

// unregister removes c; when it was its key's last connection, receivers that got packets
// from the key and mesh watchers learn that it is gone.
func (s *Server) unregister(c *sclient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if !c.canMesh {
		s.regular--
	}
	if _, ok := s.watchers[c]; ok {
		delete(s.watchers, c)
		s.stats.Watchers.Add(-1)
	}
	s.stats.CurrentConns.Add(-1)
	if c.preferred.Load() {
		s.stats.CurrentHome.Add(-1)
	}
	c.mu.Lock()
	for src := range c.sawSrc {
		if rs := s.sentTo[src]; rs != nil {
			delete(rs, c)
		}
	}
	c.mu.Unlock()
	set := s.loadSet(c.key)
	if set == nil {
		return
	}
	for i, o := range set.conns {
		if o == c {
			set.conns = append(set.conns[:i], set.conns[i+1:]...)
			break
		}
	}
	switch len(set.conns) {
	case 0:
		s.clients.Delete(c.key)
		set.gone.Store(true)
		set.active.Store(nil)        // a reader's cached pointer to the set holds no connection
		if s.loadFwd(c.key) == nil { // still in the region through the mesh: not gone yet
			s.notePeerGoneLocked(c.key)
		}
		for w := range s.watchers {
			w.queueGone(c.key, PeerGoneDisconnected)
		}
	case 1:
		s.stats.DupKeys.Add(-1)
		set.conns[0].isDup.Store(false)
		fallthrough
	default:
		set.active.Store(set.conns[len(set.conns)-1])
	}
}

// notePeerGoneLocked tells the clients that received packets from k that k left the region
// (neither local nor reachable through the mesh any more).
func (s *Server) notePeerGoneLocked(k Key) {
	for r := range s.sentTo[k] {
		r.mu.Lock()
		r.forgetSrcLocked(k)
		r.mu.Unlock()
		r.queueGone(k, PeerGoneDisconnected)
	}
	delete(s.sentTo, k)
}

// forgetSrcLocked drops k from the sources c got packets from: if k comes back, its next
// packet to c subscribes c to its departure again.
func (c *sclient) forgetSrcLocked(k Key) {
	delete(c.sawSrc, k)
	if c.lastSrc == k {
		c.haveLastSrc = false
	}
}

func (s *Server) loadSet(k Key) *clientSet {
	v, ok := s.clients.Load(k)
	if !ok {
		return nil
	}
	return v.(*clientSet)
}

// setFor is loadSet through a one-entry cache in the sending client, which only its reader
// uses: a client's packets mostly go to one peer, and the registry's lookup hashes the key.
func (s *Server) setFor(from *sclient, k Key) *clientSet {
	if from == nil {
		return s.loadSet(k)
	}
	if set := from.dstSet; set != nil && from.dstKey == k && !set.gone.Load() {
		return set
	}
	set := s.loadSet(k)
	if set != nil {
		from.dstKey, from.dstSet = k, set
	}
	return set
}

// noteActive makes a duplicate connection that just sent a frame the active one.
func (s *Server) noteActive(c *sclient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.loadSet(c.key)
	if set == nil || set.active.Load() == c {
		return
	}
	for i, o := range set.conns {
		if o == c {
			set.conns = append(append(set.conns[:i:i], set.conns[i+1:]...), c)
			break
		}
	}
	set.active.Store(c)
}

// notePeerSend records that dst received a packet from src, so dst hears when src leaves.
func (s *Server) notePeerSend(src Key, dst *sclient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadSet(src) == nil && s.loadFwd(src) == nil {
		// Already gone from the region (its packet waited in dst's queue): nothing to
		// subscribe to, and dst forgets src (forgetSrcLocked).
		dst.mu.Lock()
		dst.forgetSrcLocked(src)
		dst.mu.Unlock()
		return
	}
	rs := s.sentTo[src]
	if rs == nil {
		rs = map[*sclient]struct{}{}
		s.sentTo[src] = rs
	}
	rs[dst] = struct{}{}
}

// addWatcher subscribes a mesh peer to presence changes, starting with everyone here now.
func (s *Server) addWatcher(c *sclient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watchers[c]; ok {
		return
	}
	s.watchers[c] = struct{}{}
	s.stats.Watchers.Add(1)
	s.clients.Range(func(_, v any) bool {
		if a := v.(*clientSet).active.Load(); a != nil {
			c.queuePresent(a.presence())
		}
		return true
	})
}

// closePeer closes every connection of key (a mesh peer's request).
func (s *Server) closePeer(key Key) {
	s.mu.Lock()
	var cs []*sclient
	if set := s.loadSet(key); set != nil {
		cs = append(cs, set.conns...)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.closeConn()
	}
}

// Close tells every client the server is restarting, gives their send loops a moment to
// write that, then closes all connections. New connections are refused.
func (s *Server) Close() {
	s.refusals.close()
	s.kaTimer.Stop()
	s.mu.Lock()
	s.closing = true
	cs := make([]*sclient, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
		c.queueRestarting()
	}
	s.mu.Unlock()
	deadline := time.Now().Add(time.Second)
	for _, c := range cs {
		for !c.sendIdle() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c.closeConn()
	}
	s.idleWatch.close()
}

// keepAliveEvery is how often the keepalive sweep runs: an eighth of the interval, so each
// client's KeepAlive goes out at most that late and the frames of clients that connected
// together are spread over that much time.
func (s *Server) keepAliveEvery() time.Duration { return max(s.opts.KeepAlive/8, 10*time.Millisecond) }

// keepAliveSweep sends a KeepAlive frame to each client whose interval has passed (clients
// drop a connection silent for 120 s), one timer for the server instead of one per client,
// retires senders that found nothing to write since the last sweep, and moves readers that
// got nothing to the idle watch (idleread.go).
func (s *Server) keepAliveSweep() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	for c := range s.conns {
		if c.idle != nil {
			c.idle.sweep()
		}
		c.mu.Lock()
		if !now.Before(c.kaAt) {
			c.kaAt = now.Add(s.opts.KeepAlive)
			c.kaDue = true
			c.startSenderLocked()
		} else {
			c.retireSenderLocked()
		}
		c.mu.Unlock()
	}
	s.kaTimer.Reset(s.keepAliveEvery())
}

// deliver routes a packet from src to the active connection of dst, or to the mesh peer
// that has dst, or drops it.
func (s *Server) deliver(from *sclient, dst Key, p packet) {
	if set := s.setFor(from, dst); set != nil {
		if c := set.active.Load(); c != nil {
			c.enqueue(p)
			return
		}
	}
	if f := s.meshForwarder(dst); f != nil {
		f.forward(dst, p)
		return
	}
	s.stats.drop(dropUnknownDest, p.len())
	if p.disco && from != nil {
		from.noteNotHere(dst)
	}
	p.release()
}
