package derp

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mesh client timing and sizes.
const (
	meshDialTimeout = 10 * time.Second
	// meshReadTimeout ends a silent link: peers send a KeepAlive at least every ~65 s.
	meshReadTimeout = 150 * time.Second
	// meshFwdWriteTimeout bounds one batch of writes to the peer; derper's mesh forwarding
	// gives up after 5 s as well.
	meshFwdWriteTimeout = 5 * time.Second
	meshMinBackoff      = 500 * time.Millisecond
	meshMaxBackoff      = 30 * time.Second
	// meshQueueDepth bounds the packets waiting for one mesh link. A link carries many
	// clients' traffic, so it is deeper than a client's queue; at 2 KiB per pooled packet
	// a full queue holds about 1 MiB, and meshQueueBytes keeps large packets to that too.
	meshQueueDepth = 512
	meshQueueBytes = meshQueueDepth * pooledSize
	// maxServerKeyLen bounds the ServerKey frame (magic + key + future bytes), as clients do.
	maxServerKeyLen  = 1 << 10
	maxServerInfoLen = 1 << 16
	maxHealthLen     = 1 << 16
)

// errSelfConnect ends a mesh client that dialled its own server.
var errSelfConnect = errors.New("mesh peer is this relay itself")

// MeshPeerURL turns a configured peer ("host", "host:port", "[v6]:port" or a full https
// URL) into the https URL of its DERP endpoint; defaultPort is used when none is given.
func MeshPeerURL(peer string, defaultPort int) (string, error) {
	peer = strings.TrimSpace(peer)
	if peer == "" {
		return "", errors.New("mesh peer: empty")
	}
	if strings.Contains(peer, "://") {
		u, err := url.Parse(peer)
		if err != nil {
			return "", fmt.Errorf("mesh peer %q: %w", peer, err)
		}
		if u.Scheme != "https" || u.Hostname() == "" {
			return "", fmt.Errorf("mesh peer %q: want https://host[:port][/derp]", peer)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/derp"
		}
		return u.String(), nil
	}
	host, port := peer, ""
	if h, p, err := net.SplitHostPort(peer); err == nil {
		host, port = h, p
	} else if strings.Count(peer, ":") > 1 {
		host = strings.Trim(peer, "[]") // a bare IPv6 address
	}
	host = strings.Trim(host, "[]")
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("mesh peer %q: want host[:port]", peer)
	}
	if port == "" {
		if defaultPort <= 0 || defaultPort > 65535 {
			return "", fmt.Errorf("mesh peer %q: no port given and no default port", peer)
		}
		port = strconv.Itoa(defaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("mesh peer %q: port %q is not 1..65535", peer, port)
	}
	return "https://" + net.JoinHostPort(host, port) + "/derp", nil
}

// RunMeshClient meshes this server with the relay at peerURL (https://host[:port]/derp):
// it connects with our own server key and the mesh key, watches the peer's connections and
// forwards packets for the peer's clients to it. It reconnects with backoff and blocks until
// ctx ends (then it returns nil). If the peer turns out to be this server itself it stops
// and returns nil, so a region's whole node list can be configured on every node.
//
// tlsCfg verifies the peer (nil: system roots); its ServerName defaults to the URL's host.
func (s *Server) RunMeshClient(ctx context.Context, peerURL string, tlsCfg *tls.Config) error {
	var zero MeshKey
	if s.opts.MeshKey == zero {
		return errors.New("derp: mesh: no mesh key configured")
	}
	u, err := url.Parse(peerURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return fmt.Errorf("derp: mesh peer %q: want https://host[:port]/derp", peerURL)
	}
	l := s.newMeshLink(u, tlsCfg)
	s.mesh.addLink(l)
	self, err := l.run(ctx)
	if !self { // a self entry stays listed, so status explains the missing link
		s.mesh.removeLink(l)
	}
	return err
}

// meshLink is one outgoing mesh client. It is the forwarder for every key its peer
// announces; packets wait in q for the current connection's writer.
type meshLink struct {
	s    *Server
	url  string
	host string // Host header and default SNI
	addr string // host:port to dial
	tls  *tls.Config
	log  *slog.Logger

	q      chan packet // with dst set
	queued budget      // bytes in q (queue.go)
	up     atomic.Bool // a connection is established and its writer drains q

	keys map[Key]struct{} // keys we registered forwarders for; run goroutine only

	forwarded atomic.Int64
	dropped   atomic.Int64
	connects  atomic.Int64
	nkeys     atomic.Int64

	mu        sync.Mutex // guards the status fields below
	state     string
	since     time.Time
	serverKey Key
	lastErr   string
	health    string
}

func (s *Server) newMeshLink(u *url.URL, tlsCfg *tls.Config) *meshLink {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	var cfg *tls.Config
	if tlsCfg != nil {
		cfg = tlsCfg.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"} // the upgrade needs HTTP/1.1, never h2
	l := &meshLink{
		s:     s,
		url:   u.String(),
		host:  u.Host,
		addr:  net.JoinHostPort(u.Hostname(), port),
		tls:   cfg,
		log:   s.log.With("peer", u.Host),
		q:     make(chan packet, meshQueueDepth),
		keys:  map[Key]struct{}{},
		state: "connecting",
		since: time.Now(),
	}
	l.queued.limit, l.queued.parent = meshQueueBytes, &s.queued
	return l
}

func (l *meshLink) setState(state string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != state {
		l.state, l.since = state, time.Now()
	}
	if err != nil {
		l.lastErr = err.Error()
	}
}

func (l *meshLink) status() MeshPeerStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := MeshPeerStatus{
		URL: l.url, State: l.state, Since: l.since, LastError: l.lastErr, HealthText: l.health,
		Keys: int(l.nkeys.Load()), Forwarded: l.forwarded.Load(), Dropped: l.dropped.Load(),
		Connects: l.connects.Load(),
	}
	var zero Key
	if l.serverKey != zero {
		st.ServerKey = l.serverKey.String()
	}
	return st
}

// run connects, serves the link until it breaks, and retries with exponential backoff
// (reset once a connection got as far as the peer's first PeerPresent).
func (l *meshLink) run(ctx context.Context) (self bool, _ error) {
	defer l.drain() // packets that raced with the last disconnect
	backoff := meshMinBackoff
	lastLogged := ""
	for {
		watched, err := l.connectOnce(ctx)
		if ctx.Err() != nil {
			l.setState("stopped", nil)
			return false, nil
		}
		if errors.Is(err, errSelfConnect) {
			l.log.Info("derp: mesh: peer is this relay; not meshing with it", "url", l.url)
			l.setState("self", nil)
			return true, nil
		}
		if watched {
			backoff = meshMinBackoff
		}
		if err == nil {
			err = errors.New("connection closed")
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, meshMaxBackoff)
		// The same failure over and over is logged once at Warn, then at Debug.
		level := slog.LevelWarn
		if err.Error() == lastLogged {
			level = slog.LevelDebug
		}
		lastLogged = err.Error()
		if watched {
			lastLogged = "" // a working link in between: the next failure is news
		}
		msg := "derp: mesh: link down"
		if !watched && errors.Is(err, errClosedBeforeWatch) {
			msg = "derp: mesh: peer closed the link before sending its connection list; " +
				"do both relays use the same mesh key?"
		}
		l.log.Log(context.Background(), level, msg, "url", l.url, "err", err, "retry_in", wait.Round(time.Millisecond))
		l.setState("backoff", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			l.setState("stopped", nil)
			return false, nil
		case <-t.C:
		}
		l.setState("connecting", nil)
	}
}

// errClosedBeforeWatch: the peer accepted the handshake but closed before its first
// PeerPresent (it always sends one for our own connection), which is how a relay with a
// different mesh key refuses WatchConns.
var errClosedBeforeWatch = errors.New("peer closed the connection before its first PeerPresent")

// connectOnce runs one connection to the peer until it ends. watched reports whether the
// peer's connection list started arriving.
func (l *meshLink) connectOnce(ctx context.Context) (watched bool, err error) {
	nc, br, serverKey, err := l.dial(ctx)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	l.mu.Lock()
	l.serverKey = serverKey
	l.mu.Unlock()
	l.connects.Add(1)
	l.log.Info("derp: mesh: connected", "url", l.url, "server_key", serverKey.String())
	l.setState("connected", nil)

	done := make(chan struct{})
	pongs := make(chan [8]byte, 1)
	writerDone := make(chan error, 1)
	l.up.Store(true)
	go func() { writerDone <- l.writeLoop(nc, done, pongs) }()
	lc := &meshConn{l: l, nc: nc, pongs: pongs}
	err = lc.readFrames(br)

	// Withdraw everything this peer announced first, so no new packets are queued for a
	// link that is gone, then stop the writer and drop what it did not send.
	l.up.Store(false)
	l.removeAll()
	close(done)
	nc.Close()
	if werr := <-writerDone; werr != nil {
		err = fmt.Errorf("writing to peer: %w", werr) // the reader only saw the close
	}
	l.drain()
	if !lc.watched && (err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF)) {
		err = errClosedBeforeWatch
	}
	return lc.watched, err
}

// dial opens TLS to the peer, upgrades /derp and runs the client side of the handshake,
// ending with WatchConns. It returns the connection and its reader.
func (l *meshLink) dial(ctx context.Context) (net.Conn, *bufio.Reader, Key, error) {
	var serverKey Key
	d := net.Dialer{Timeout: meshDialTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return nil, nil, serverKey, fmt.Errorf("dial: %w", err)
	}
	deadline := time.Now().Add(meshDialTimeout)
	raw.SetDeadline(deadline)
	nc := tls.Client(raw, l.tls)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := nc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, nil, serverKey, fmt.Errorf("TLS: %w", err)
	}
	// From here on ctx ending must also unblock the reads of the DERP handshake.
	stop := context.AfterFunc(hctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	br := bufio.NewReaderSize(nc, 16<<10)
	bw := bufio.NewWriterSize(nc, 4<<10)
	serverKey, err = l.handshake(br, bw)
	if err != nil {
		nc.Close()
		return nil, nil, serverKey, err
	}
	if !stop() || ctx.Err() != nil {
		nc.Close()
		return nil, nil, serverKey, context.Cause(ctx)
	}
	nc.SetDeadline(time.Time{})
	if ta, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		l.s.mesh.noteAddr(ta.AddrPort().Addr())
	}
	return nc, br, serverKey, nil
}

// handshake speaks the client side after TLS: upgrade, ServerKey, ClientInfo, ServerInfo,
// WatchConns.
func (l *meshLink) handshake(br *bufio.Reader, bw *bufio.Writer) (Key, error) {
	fmt.Fprintf(bw, "GET /derp HTTP/1.1\r\nHost: %s\r\nUser-Agent: edgerelay-mesh\r\n"+
		"Connection: Upgrade\r\nUpgrade: DERP\r\n\r\n", l.host)
	if err := bw.Flush(); err != nil {
		return Key{}, fmt.Errorf("writing upgrade: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return Key{}, fmt.Errorf("reading upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return Key{}, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	serverKey, err := readServerKey(br)
	if err != nil {
		return Key{}, err
	}
	if serverKey == l.s.pub {
		return serverKey, errSelfConnect
	}
	msg, err := json.Marshal(clientInfo{MeshKey: l.s.opts.MeshKey.String(), Version: ProtocolVersion,
		CanAckPings: true, AppName: "edgerelay-mesh"})
	if err != nil {
		return serverKey, err
	}
	sealed, err := l.s.priv.sealTo(serverKey, msg)
	if err != nil {
		return serverKey, err
	}
	if err := writeFrame(bw, frameClientInfo, l.s.pub[:], sealed); err != nil {
		return serverKey, err
	}
	if err := bw.Flush(); err != nil {
		return serverKey, fmt.Errorf("writing ClientInfo: %w", err)
	}
	if _, err := readServerInfo(br, l.s.priv, serverKey); err != nil {
		return serverKey, err
	}
	if err := writeFrameHeader(bw, frameWatchConns, 0); err != nil {
		return serverKey, err
	}
	if err := bw.Flush(); err != nil {
		return serverKey, fmt.Errorf("writing WatchConns: %w", err)
	}
	return serverKey, nil
}

// meshConn is the reading side of one connection of a link.
type meshConn struct {
	l       *meshLink
	nc      net.Conn // nil in fuzzing: no deadlines
	pongs   chan [8]byte
	watched bool // the first PeerPresent arrived
}

// readFrames handles the peer's frames until the connection ends.
func (c *meshConn) readFrames(br *bufio.Reader) error {
	l := c.l
	for {
		if c.nc != nil {
			c.nc.SetReadDeadline(time.Now().Add(meshReadTimeout))
		}
		typ, n, err := readFrameHeader(br)
		if err != nil {
			return fmt.Errorf("reading frame: %w", err)
		}
		switch typ {
		case framePeerPresent, framePeerGone:
			if n < keyLen || n > maxUnknownFrameLen {
				return fmt.Errorf("frame type 0x%02x: length %d outside %d..%d", typ, n, keyLen, maxUnknownFrameLen)
			}
			var k Key
			if _, err := io.ReadFull(br, k[:]); err != nil {
				return err
			}
			if err := discard(br, n-keyLen); err != nil {
				return err
			}
			if typ == framePeerPresent {
				c.watched = true
				l.present(k)
			} else {
				l.gone(k)
			}
		case framePing:
			if n < 8 || n > maxPingLen {
				return fmt.Errorf("ping frame: length %d outside 8..%d", n, maxPingLen)
			}
			var d [8]byte
			if _, err := io.ReadFull(br, d[:]); err != nil {
				return err
			}
			if err := discard(br, n-8); err != nil {
				return err
			}
			select {
			case c.pongs <- d:
			default:
			}
		case frameHealth:
			if n > maxHealthLen {
				return fmt.Errorf("health frame: length %d over %d", n, maxHealthLen)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return err
			}
			l.noteHealth(string(b))
		default:
			// KeepAlive, Restarting, packets addressed to our server key and future types.
			if n > maxUnknownFrameLen {
				return fmt.Errorf("frame type 0x%02x: length %d over limit %d", typ, n, maxUnknownFrameLen)
			}
			if err := discard(br, n); err != nil {
				return err
			}
		}
	}
}

// present registers the link as the forwarder for k (never for our own key: that is our
// own mesh connection showing up in the peer's list).
func (l *meshLink) present(k Key) {
	if k == l.s.pub {
		return
	}
	if _, ok := l.keys[k]; ok {
		return
	}
	l.keys[k] = struct{}{}
	l.nkeys.Store(int64(len(l.keys)))
	l.s.addForwarder(k, l)
}

// gone withdraws the link for k: the peer's last connection of k closed, or the peer told
// us it does not have k (NotHere after a forwarded disco packet).
func (l *meshLink) gone(k Key) {
	if _, ok := l.keys[k]; !ok {
		return
	}
	delete(l.keys, k)
	l.nkeys.Store(int64(len(l.keys)))
	l.s.removeForwarder(k, l)
}

func (l *meshLink) removeAll() {
	for k := range l.keys {
		l.s.removeForwarder(k, l)
	}
	clear(l.keys)
	l.nkeys.Store(0)
}

func (l *meshLink) noteHealth(text string) {
	l.mu.Lock()
	changed := l.health != text
	l.health = text
	l.mu.Unlock()
	if changed {
		l.log.Info("derp: mesh: peer health", "url", l.url, "problem", text)
	}
}

// forward queues p for the peer without blocking: when the queue is full or over its
// bytes the oldest packet makes room, as for clients.
func (l *meshLink) forward(dst Key, p packet) {
	if !l.up.Load() {
		dropPacket(&l.s.stats, &l.dropped, dropGoneDisconnected, p)
		return
	}
	p.dst = dst
	if push(p, chanQueue(l.q), chanQueue(l.q), &l.queued, &l.s.stats, &l.dropped) && !l.up.Load() {
		l.drain() // the link went down meanwhile and may have drained already
	}
}

func (l *meshLink) drain() {
	drain(chanQueue(l.q), &l.queued, &l.s.stats, &l.dropped, dropGoneDisconnected)
}

// writeLoop writes queued ForwardPacket frames and pongs, batching whatever is ready into
// one flush. A write error or timeout closes the connection (which ends the reader) and is
// returned; a stop through done returns nil.
func (l *meshLink) writeLoop(nc net.Conn, done <-chan struct{}, pongs <-chan [8]byte) error {
	defer nc.Close()
	bw := bufio.NewWriterSize(nc, 32<<10)
	for {
		var err error
		select {
		case <-done:
			return nil
		case p := <-l.q:
			nc.SetWriteDeadline(time.Now().Add(meshFwdWriteTimeout))
			err = l.writeForward(bw, p)
		case d := <-pongs:
			nc.SetWriteDeadline(time.Now().Add(meshFwdWriteTimeout))
			err = writeFrame(bw, framePong, d[:])
		}
		if err == nil {
			err = l.writeReady(bw, pongs)
		}
		if err != nil {
			select {
			case <-done:
				return nil // closed under us on purpose
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				l.s.stats.WriteTimeouts.Add(1)
			}
			return err
		}
	}
}

func (l *meshLink) writeReady(bw *bufio.Writer, pongs <-chan [8]byte) error {
	for {
		select {
		case p := <-l.q:
			if err := l.writeForward(bw, p); err != nil {
				return err
			}
		case d := <-pongs:
			if err := writeFrame(bw, framePong, d[:]); err != nil {
				return err
			}
		default:
			return bw.Flush()
		}
	}
}

func (l *meshLink) writeForward(bw *bufio.Writer, p packet) error {
	defer p.release()
	defer l.queued.give(p.cost())
	if err := writeFrame(bw, frameForwardPacket, p.src[:], p.dst[:], p.data()); err != nil {
		l.dropped.Add(1)
		l.s.stats.drop(dropWriteError, p.len())
		return err
	}
	// Counted when handed to the TLS writer; a later flush error drops the link.
	l.forwarded.Add(1)
	l.s.stats.PacketsForwardedOut.Add(1)
	return nil
}
