// Package acme obtains and renews the relay's certificate from an ACME CA (Let's Encrypt or
// any other) by DNS-01, writing the challenge TXT records through a libdns provider. The
// account and certificate live in state_dir so a restart reuses them; an ACME profile
// (Let's Encrypt's classic, tlsserver, shortlived) can be asked for; renewal follows the
// CA's ARI window when offered (else two thirds of the lifetime, half for short-lived
// certificates), with checks and retries never further apart than a tenth of the lifetime,
// and swaps the new certificate in for the next TLS handshake while the old one keeps
// serving.
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/registration"

	"github.com/edgerelay/edgerelay/agent/config"
)

// CertChange tells subscribers that a new certificate is being served.
type CertChange struct {
	Domains   []string
	Serial    string // hex
	NotBefore time.Time
	NotAfter  time.Time
	Renewed   bool // false for the certificate loaded from state_dir at start
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

// WithRoundTripper wraps the transport used to talk to the CA (tests count requests).
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(m *Manager) { m.wrapRT = wrap }
}

// Manager keeps a certificate for the configured domains. Build it with New, serve
// GetCertificate, and call Run.
type Manager struct {
	cfg     config.ACME
	domains []string
	solver  *dnsSolver
	store   store
	log     *slog.Logger
	timing  Timing
	wrapRT  func(http.RoundTripper) http.RoundTripper
	subs    []func(CertChange)

	mu   sync.RWMutex
	cert *tls.Certificate // Leaf set

	obtainMu sync.Mutex // one order at a time; guards client and acct
	client   *lego.Client
	acct     *account

	changed chan struct{} // a forced renewal replaced the certificate: reschedule
}

// New builds a Manager from the acme section. dns writes the challenge records (the ddns
// provider, or one built from acme.dns_provider). A certificate stored in stateDir for the
// same domains is served at once, before Run.
func New(cfg config.ACME, dns DNSProvider, stateDir string, log *slog.Logger, opts ...Option) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	if dns == nil {
		return nil, errors.New("acme: no DNS provider for the DNS-01 challenge")
	}
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme.domains is empty")
	}
	if cfg.Directory == "" {
		return nil, errors.New("acme.directory is empty")
	}
	m := &Manager{cfg: cfg, log: log.With("component", "acme"), changed: make(chan struct{}, 1)}
	routeLegoLog(m.log)
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
	prop := cfg.PropagationTimeout.D()
	if prop <= 0 {
		prop = 2 * time.Minute
	}
	m.solver = &dnsSolver{
		p: dns, resolvers: dns01.ParseNameservers(cfg.Resolvers), ttl: 120 * time.Second,
		timeout: prop, interval: m.timing.PollInterval, apiTime: time.Minute, log: m.log,
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

// Renew orders a new certificate now, whatever the schedule says, and puts it in service.
// The current certificate keeps serving if it fails. For tests and the CLI.
func (m *Manager) Renew(ctx context.Context) error {
	err := m.obtain(ctx)
	if err == nil {
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
	return err
}

// Run keeps a valid certificate in service until ctx ends: it orders one when there is
// none, renews in the CA's ARI window (or at two thirds of the lifetime), and retries
// failures with backoff. Failures never end Run.
func (m *Manager) Run(ctx context.Context) error {
	fails := 0
	var retryAt time.Time
	for {
		at, renew, why := retryAt, true, "retry after a failure"
		if retryAt.IsZero() {
			at, renew, why = m.nextRenewal(ctx)
		}
		if wait := time.Until(at); wait > 0 {
			m.log.Info("next certificate check", "at", at.Round(time.Second), "renew", renew, "why", why)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-m.changed:
				t.Stop()
				retryAt, fails = time.Time{}, 0
				continue
			case <-t.C:
			}
		}
		if !renew {
			continue // time to ask the CA again
		}
		retryAt = time.Time{}
		err := m.obtainAsync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fails++
			d := retryDelay(fails, m.timing.RetryMin, lifeBound(m.Leaf(), m.timing.RetryMax))
			retryAt = time.Now().Add(d)
			m.log.Warn("certificate order failed; the current certificate keeps serving", "err", err,
				"attempt", fails, "retry_in", d, "current_expires", m.Expiry())
			continue
		}
		fails = 0
	}
}

// obtainAsync runs obtain without holding Run past ctx: lego's calls take no context.
func (m *Manager) obtainAsync(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- m.obtain(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nextRenewal says when to act next: renew at that time (renew true), or ask the CA for
// its renewal window again (renew false), and why.
func (m *Manager) nextRenewal(ctx context.Context) (at time.Time, renew bool, why string) {
	leaf := m.Leaf()
	now := time.Now()
	if leaf == nil {
		return now, true, "no certificate"
	}
	fallback := fallbackRenewAt(leaf)
	if !now.Before(fallback) {
		return now, true, "two thirds of the lifetime have passed"
	}
	if ctx.Err() != nil {
		return fallback, true, ""
	}
	client, err := m.ensureClient()
	if err != nil {
		m.log.Warn("cannot reach the CA to ask for its renewal window", "err", err)
		return pick(fallback, now.Add(lifeBound(leaf, m.timing.CheckInterval)), "CA unreachable, will ask again")
	}
	info, err := client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: leaf})
	if errors.Is(err, api.ErrNoARI) {
		return fallback, true, "two thirds of the lifetime (the CA offers no ARI)"
	}
	if err != nil {
		m.log.Warn("ARI request failed", "err", err)
		return pick(fallback, now.Add(lifeBound(leaf, m.timing.CheckInterval)), "ARI failed, will ask again")
	}
	check := lifeBound(leaf, m.timing.CheckInterval)
	if at := info.ShouldRenewAt(now, check); at != nil {
		return *at, true, "in the CA's ARI window"
	}
	next := check
	if info.RetryAfter > 0 && info.RetryAfter < next {
		next = info.RetryAfter
	}
	return pick(fallback, now.Add(next), "ARI window not open yet, will ask again")
}

// pick renews at the fallback time when it comes before the next check.
func pick(fallback, check time.Time, why string) (time.Time, bool, string) {
	if !check.Before(fallback) {
		return fallback, true, "two thirds of the lifetime"
	}
	return check, false, why
}

// ensureClient returns the lego client, registering the account on first use.
func (m *Manager) ensureClient() (*lego.Client, error) {
	m.obtainMu.Lock()
	defer m.obtainMu.Unlock()
	return m.clientLocked()
}

func (m *Manager) clientLocked() (*lego.Client, error) {
	if m.client != nil {
		return m.client, nil
	}
	acct, stored, err := m.store.loadAccount(m.cfg.Directory, m.cfg.Email)
	if err != nil {
		return nil, err
	}
	hc, err := m.httpClient()
	if err != nil {
		return nil, err
	}
	if m.cfg.Profile != "" {
		if err := checkProfile(hc, m.cfg.Directory, m.cfg.Profile); err != nil {
			return nil, err
		}
	}
	client, err := lego.NewClient(&lego.Config{
		CADirURL: m.cfg.Directory, User: acct, HTTPClient: hc, UserAgent: "edgerelay",
		Certificate: lego.CertificateConfig{KeyType: certcrypto.EC256, Timeout: 30 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", m.cfg.Directory, err)
	}
	if acct.reg == nil {
		if err := m.register(client, acct); err != nil {
			return nil, err
		}
	} else if stored {
		m.log.Debug("using stored ACME account", "uri", acct.reg.URI)
	}
	err = client.Challenge.SetDNS01Provider(m.solver,
		// lego keeps resolvers and the DNS timeout in package variables: one Manager per
		// process is assumed.
		dns01.CondOption(len(m.solver.resolvers) > 0, dns01.AddRecursiveNameservers(m.solver.resolvers)),
		dns01.AddDNSTimeout(m.timing.DNSTimeout))
	if err != nil {
		return nil, err
	}
	m.client, m.acct = client, acct
	return client, nil
}

func (m *Manager) register(client *lego.Client, acct *account) error {
	var reg *registration.Resource
	var err error
	if m.cfg.EAB.KID != "" {
		hmac, herr := config.ReadSecret(m.cfg.EAB.HMAC, m.cfg.EAB.HMACFile, "acme.eab.hmac")
		if herr != nil {
			return herr
		}
		reg, err = client.Registration.RegisterWithExternalAccountBinding(registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: m.cfg.EAB.KID, HmacEncoded: hmac,
		})
	} else {
		reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return fmt.Errorf("registering the ACME account: %w", err)
	}
	acct.reg = reg
	m.log.Info("ACME account registered", "uri", reg.URI, "email", m.cfg.Email)
	if err := m.store.saveAccount(m.cfg.Directory, acct); err != nil {
		return fmt.Errorf("saving the ACME account: %w", err)
	}
	return nil
}

// httpClient trusts the system roots plus acme.ca_cert_file.
func (m *Manager) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.cfg.CACertFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(m.cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("acme.ca_cert_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme.ca_cert_file: %s holds no PEM certificate", m.cfg.CACertFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	var rt http.RoundTripper = tr
	if m.wrapRT != nil {
		rt = m.wrapRT(rt)
	}
	return &http.Client{Transport: rt, Timeout: 2 * time.Minute}, nil
}

// obtain orders a certificate and puts it in service.
func (m *Manager) obtain(ctx context.Context) error {
	m.obtainMu.Lock()
	defer m.obtainMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	client, err := m.clientLocked()
	if err != nil {
		return err
	}
	req, err := m.orderRequest()
	if err != nil {
		return err
	}
	if old := m.Leaf(); old != nil {
		// ARI: tell the CA which certificate this replaces (ignored when it has no ARI).
		if id, err := certificate.MakeARICertID(old); err == nil {
			req.ReplacesCertID = id
		}
	}
	start := time.Now()
	m.log.Info("ordering certificate", "names", m.domains, "directory", m.cfg.Directory, "profile", m.cfg.Profile)
	res, err := client.Certificate.ObtainForCSR(req)
	if err != nil && strings.Contains(err.Error(), "accountDoesNotExist") {
		// The CA forgot the account (a reset test CA, a deleted account): register again.
		m.log.Warn("the CA does not know the stored account, registering again")
		m.client, m.acct = nil, nil
		if rerr := m.forgetAccount(); rerr != nil {
			return rerr
		}
		if client, err = m.clientLocked(); err != nil {
			return err
		}
		res, err = client.Certificate.ObtainForCSR(req)
	}
	if err != nil {
		return fmt.Errorf("ordering a certificate for %s: %w", strings.Join(m.domains, ", "), err)
	}
	c, err := parseCertFile(append(append([]byte{}, res.Certificate...), res.PrivateKey...))
	if err != nil {
		return fmt.Errorf("certificate from the CA: %w", err)
	}
	if err := m.store.saveCert(m.domains, res.Certificate, res.PrivateKey); err != nil {
		// Serve it anyway; the next start will order again.
		m.log.Warn("cannot store the new certificate", "err", err)
	}
	m.log.Info("certificate obtained", "took", time.Since(start).Round(time.Millisecond))
	m.setCert(c, true)
	return nil
}

// orderRequest is a fresh key and a CSR for the configured names. The order goes through
// lego's ObtainForCSR rather than Obtain: Obtain converts names with golang.org/x/net/idna,
// which links a second copy of the IDNA and Unicode tables next to the standard library's
// (about 57 KB on mipsle), and config validation admits only ASCII names anyway.
func (m *Manager) orderRequest() (certificate.ObtainForCSRRequest, error) {
	key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate key: %w", err)
	}
	cn := m.domains[0]
	if len(cn) > 64 { // the longest common name X.509 allows; the names are in the SAN anyway
		cn = ""
	}
	der, err := certcrypto.GenerateCSR(key, cn, m.domains, false)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate request: %w", err)
	}
	return certificate.ObtainForCSRRequest{CSR: csr, PrivateKey: key, Bundle: true, Profile: m.cfg.Profile}, nil
}

func (m *Manager) forgetAccount() error {
	if m.store.dir == "" {
		return nil
	}
	err := os.Remove(filepath.Join(m.store.dir, accountName(m.cfg.Directory)+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
