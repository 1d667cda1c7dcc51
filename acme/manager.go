package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"

	"github.com/edgerelay/edgerelay/agent/field"
)

// CertChange tells subscribers that a new certificate is being served.
type CertChange struct {
	Domains   []string
	Serial    string // hex
	NotBefore time.Time
	NotAfter  time.Time
	Renewed   bool // false for the certificate loaded from state_dir at start
}

// OrderFailure tells subscribers that ordering a certificate failed; the current one (if
// any, expiring at NotAfter) keeps serving and the order is retried in RetryIn.
type OrderFailure struct {
	Domains  []string
	Err      error
	Attempt  int // consecutive failures, this one included
	NotAfter time.Time
	RetryIn  time.Duration
}

// Timing tunes renewal; zero fields take the defaults.
type Timing struct {
	CheckInterval time.Duration // how often to ask the CA's ARI for its renewal window (12 h)
	RetryMin      time.Duration // first retry after a failed order (1 min), ×10 per failure...
	RetryMax      time.Duration // ...up to this (24 h)
	PollInterval  time.Duration // propagation poll interval (2 s)
	DNSTimeout    time.Duration // one DNS query during the propagation check (10 s)
}

func (t *Timing) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.CheckInterval, 12*time.Hour)
	def(&t.RetryMin, time.Minute)
	def(&t.RetryMax, 24*time.Hour)
	def(&t.PollInterval, 2*time.Second)
	def(&t.DNSTimeout, 10*time.Second)
}

// Option adjusts a Manager.
type Option func(*Manager)

// WithTiming overrides the renewal timing.
func WithTiming(t Timing) Option { return func(m *Manager) { m.timing = t } }

// WithSubscriber registers f to hear about every certificate put in service. f must return
// quickly.
func WithSubscriber(f func(CertChange)) Option {
	return func(m *Manager) { m.subs = append(m.subs, f) }
}

// WithFailures registers f to hear about every failed order. f must return quickly.
func WithFailures(f func(OrderFailure)) Option {
	return func(m *Manager) { m.fails = append(m.fails, f) }
}

// WithRoundTripper wraps the transport used to talk to the CA (tests count requests).
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(m *Manager) { m.wrapRT = wrap }
}

// Manager keeps a certificate for the configured domains. Build it with New, serve
// GetCertificate, and call Run.
type Manager struct {
	cfg     Config
	domains []string
	solver  *dnsSolver
	store   store
	log     *slog.Logger
	timing  Timing
	wrapRT  func(http.RoundTripper) http.RoundTripper
	subs    []func(CertChange)
	fails   []func(OrderFailure)

	mu   sync.RWMutex
	cert *tls.Certificate // Leaf set

	// Held under legoMu (lego.go): the client, its account and transport, and the context
	// of the flow running now.
	client    *lego.Client
	acct      *account
	transport *http.Transport
	flowCtx   atomic.Pointer[context.Context]

	changed chan struct{} // a forced renewal replaced the certificate: reschedule
}

// New builds a Manager from the acme section, after checking it (errors name the keys under
// acme). dns writes the challenge records (the ddns provider, or one built from
// acme.dns_provider). A certificate stored in stateDir for the same domains is served at
// once, before Run.
func New(cfg Config, dns DNSProvider, stateDir string, log *slog.Logger, opts ...Option) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	if dns == nil {
		return nil, errors.New("acme: no DNS provider for the DNS-01 challenge")
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("acme", err)
		return nil, ps
	}
	m := &Manager{cfg: cfg, log: log.With("component", "acme"), changed: make(chan struct{}, 1)}
	for _, d := range cfg.Domains {
		m.domains = append(m.domains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, o := range opts {
		o(m)
	}
	m.timing.setDefaults()
	if stateDir != "" {
		m.store = store{dir: filepath.Join(stateDir, "acme"), profile: cfg.Profile}
	}
	prop := cfg.PropagationTimeout
	m.solver = &dnsSolver{
		p: dns, resolvers: dns01.ParseNameservers(cfg.Resolvers), ttl: 120 * time.Second,
		timeout: prop, interval: m.timing.PollInterval, apiTime: time.Minute, log: m.log,
		ctx: m.flowContext,
	}
	c, err := m.store.loadCert(m.domains)
	if err != nil {
		// A damaged file costs one new order; it must not stop the daemon.
		m.log.Warn("ignoring stored certificate", "err", err)
	} else if c != nil {
		switch {
		case !covers(c.Leaf, m.domains):
			m.log.Info("stored certificate is for other names, a new one will be ordered", "names", c.Leaf.DNSNames)
		case time.Now().After(c.Leaf.NotAfter):
			m.log.Info("stored certificate has expired, a new one will be ordered", "expired", c.Leaf.NotAfter)
		default:
			m.setCert(c, false)
		}
	}
	return m, nil
}

// GetCertificate serves the current certificate; it is the relay's certificate source, so
// a renewal is picked up by the next handshake without restarting anything.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return nil, fmt.Errorf("acme: no certificate for %s yet", strings.Join(m.domains, ", "))
	}
	return m.cert, nil
}

// Expiry returns when the current certificate expires (zero when there is none).
func (m *Manager) Expiry() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return time.Time{}
	}
	return m.cert.Leaf.NotAfter
}

// Leaf returns the current certificate's leaf (nil when there is none).
func (m *Manager) Leaf() *x509.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cert == nil {
		return nil
	}
	return m.cert.Leaf
}

func (m *Manager) setCert(c *tls.Certificate, renewed bool) {
	m.mu.Lock()
	m.cert = c
	m.mu.Unlock()
	ev := CertChange{Domains: c.Leaf.DNSNames, Serial: hex.EncodeToString(c.Leaf.SerialNumber.Bytes()),
		NotBefore: c.Leaf.NotBefore, NotAfter: c.Leaf.NotAfter, Renewed: renewed}
	if renewed {
		m.log.Info("certificate in service", "names", ev.Domains, "serial", ev.Serial, "expires", ev.NotAfter)
	} else {
		m.log.Info("using stored certificate", "names", ev.Domains, "serial", ev.Serial, "expires", ev.NotAfter)
	}
	for _, f := range m.subs {
		f(ev)
	}
}
