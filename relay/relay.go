package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/stun"
	"github.com/edgerelay/edgerelay/relay/verify"
)

// Options build a Relay.
type Options struct {
	Config   Config
	StateDir string
	// Certs serves the TLS certificate. Nil means: build it from Config.TLS (manual or
	// self-signed); acme mode needs the agent to pass the ACME manager here.
	Certs CertSource
	// Addrs are this box's public addresses as the agent knows them at start: an IP-only
	// relay (no hostname) names its self-signed certificate after them.
	Addrs  Addrs
	Logger *slog.Logger
}

// Relay is the DERP + STUN service of one node.
type Relay struct {
	cfg   Config
	log   *slog.Logger
	base  *slog.Logger // without our component, for sub-parts that name their own
	derp  *derp.Server
	certs CertSource
	pin   string // sha256-raw pin in self-signed mode

	metaMu   sync.Mutex // guards the cache below
	lastSrc  *tls.Certificate
	lastMeta *tls.Certificate

	verify      *verify.Verifier
	liveMap     bool
	liveJSON    atomic.Pointer[[]byte] // the region the agent set, as DERP map JSON
	listenStats ListenerStats
	ready       chan struct{}               // closed once Run listens
	tcpAddr     atomic.Pointer[net.TCPAddr] // bound addresses, once Run listens
	stunAddr    atomic.Pointer[net.UDPAddr]
	stun        atomic.Pointer[stun.Server]
}

// New loads (or creates) the server key and the certificate source.
func New(opts Options) (*Relay, error) {
	base := opts.Logger
	if base == nil {
		base = slog.New(slog.DiscardHandler)
	}
	log := base.With("component", "relay")
	cfg := opts.Config
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("relay", err)
		return nil, ps
	}
	priv, err := LoadOrCreateKey(filepath.Join(opts.StateDir, "derp.key"))
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, log: log, base: base, certs: opts.Certs, ready: make(chan struct{}),
		liveMap: field.On(cfg.LiveMap, true)}
	if r.certs == nil {
		switch cfg.TLS.Mode {
		case "manual":
			if r.certs, err = NewManualCert(cfg.TLS.CertFile, cfg.TLS.KeyFile, log); err != nil {
				return nil, err
			}
		case "self-signed":
			ss, err := LoadOrCreateSelfSigned(opts.StateDir, Hostname(cfg, opts.Addrs))
			if err != nil {
				return nil, fmt.Errorf("self-signed certificate: %w", err)
			}
			r.certs, r.pin = ss, ss.Pin()
		default:
			return nil, fmt.Errorf("relay: tls mode %q needs a certificate source", cfg.TLS.Mode)
		}
	}
	var meshKey derp.MeshKey
	if cfg.Mesh.Key != "" {
		if meshKey, err = derp.ParseMeshKey(cfg.Mesh.Key); err != nil {
			return nil, fmt.Errorf("relay.mesh.key: %w", err)
		}
	}
	if r.verify, err = verify.New(cfg.VerifyClients, base, verify.WithListener(cfg.Listen)); err != nil {
		return nil, fmt.Errorf("relay.verify_clients: %w", err)
	}
	dopts := cfg.derpOptions()
	dopts.Verify = func(ctx context.Context, k derp.Key, src netip.Addr) error { return r.verify.Check(ctx, k, src) }
	dopts.MeshKey, dopts.Logger = meshKey, log
	r.derp, err = derp.NewServer(priv, dopts)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// DERP is the protocol server (for stats and tests).
func (r *Relay) DERP() *derp.Server { return r.derp }

// ListenerStats are the accept counters.
func (r *Relay) ListenerStats() *ListenerStats { return &r.listenStats }

// CertPin is the CertName pin for self-signed mode ("" otherwise).
func (r *Relay) CertPin() string { return r.pin }

// Ready is closed once Run has bound its listeners.
func (r *Relay) Ready() <-chan struct{} { return r.ready }

// Addr is the bound DERP listener address (nil before Run listens).
func (r *Relay) Addr() *net.TCPAddr { return r.tcpAddr.Load() }

// STUNAddr is the bound STUN address (nil before Run listens or when STUN is off).
func (r *Relay) STUNAddr() *net.UDPAddr { return r.stunAddr.Load() }

// STUNStats returns the STUN counters (zero when STUN is off).
func (r *Relay) STUNStats() stun.Stats {
	if s := r.stun.Load(); s != nil {
		return s.Stats()
	}
	return stun.Stats{}
}

// getCertificate serves the source's certificate with the meta cert appended, cached per
// source certificate so handshakes do not copy chains.
func (r *Relay) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := r.certs.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, errNoCert
	}
	r.metaMu.Lock()
	defer r.metaMu.Unlock()
	if c != r.lastSrc {
		r.lastSrc, r.lastMeta = c, r.derp.WithMetaCert(c)
	}
	return r.lastMeta, nil
}

// Connections not yet authenticated are held briefly: a plain HTTP connection idles at most
// plainHTTPIdle between requests, and any connection is closed if its client is not
// authenticated within minPendingLifetime (or twice the handshake timeout, if longer: TLS and
// the upgrade, then the DERP handshake).
const (
	plainHTTPIdle      = 5 * time.Second
	minPendingLifetime = 30 * time.Second
	maxHeaderBytes     = 16 << 10 // DERP upgrades and probes send a few hundred bytes
)

func (r *Relay) admitLimits() admitLimits {
	c := r.cfg
	return admitLimits{
		AcceptRate: c.AcceptRate, AcceptBurst: c.AcceptBurst,
		SourceRate: c.AcceptRatePerSource, SourceBurst: c.AcceptBurstPerSource,
		MaxPending: c.MaxPending, MaxPendingPerSource: c.MaxPendingPerSource,
		PendingLifetime: max(minPendingLifetime, 2*c.HandshakeTimeout),
		IsMeshPeer:      r.derp.IsMeshPeerAddr,
	}
}

// Run listens and serves until ctx ends, then tells clients the server is restarting and
// closes everything. A bind failure is returned at once.
func (r *Relay) Run(ctx context.Context) error {
	ln, err := listenTCP(ctx, r.cfg.Listen, r.cfg.TCPKeepAlive, r.cfg.TCPUserTimeout)
	if err != nil {
		return fmt.Errorf("relay: listen %s: %w", r.cfg.Listen, err)
	}
	r.tcpAddr.Store(ln.Addr().(*net.TCPAddr))
	var wg sync.WaitGroup
	defer wg.Wait()
	if addr := r.cfg.STUNAddr(); addr != "" {
		st, err := stun.Listen(addr, r.base)
		if err != nil {
			ln.Close()
			return fmt.Errorf("relay: stun: %w", err)
		}
		r.stun.Store(st)
		r.stunAddr.Store(st.Addr().(*net.UDPAddr))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.Serve(ctx); err != nil {
				r.log.Error("stun server stopped", "err", err)
			}
		}()
	}
	tlsCfg := &tls.Config{
		GetCertificate: r.getCertificate,
		NextProtos:     []string{"http/1.1"}, // DERP is an HTTP/1.1 upgrade; never h2
		MinVersion:     tls.VersionTLS12,
	}
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: r.cfg.HandshakeTimeout,
		// Only plain HTTP connections (probes) are ever idle here: DERP ones are hijacked.
		// They are unauthenticated, so they may not linger (nor live past pendingLifetime).
		IdleTimeout:    plainHTTPIdle,
		MaxHeaderBytes: maxHeaderBytes,
		TLSNextProto:   map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:    func(net.Listener) context.Context { return ctx },
		ErrorLog:       slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	if err := r.startMesh(ctx, &wg); err != nil {
		ln.Close()
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.verify.Run(ctx)
	}()
	defer r.verify.Close()
	close(r.ready)
	r.log.Info("relay listening", "derp", ln.Addr().String(), "stun", r.cfg.STUNAddr(), "tls", r.cfg.TLS.Mode,
		"server_key", r.derp.PublicKey().String())
	errc := make(chan error, 1)
	guarded := &guardedListener{Listener: ln, adm: newAdmission(r.admitLimits(), &r.listenStats)}
	go func() { errc <- srv.Serve(tls.NewListener(derp.NewListener(guarded), tlsCfg)) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		r.derp.Close()
		return fmt.Errorf("relay: serve: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	r.derp.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
