package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Defaults; each can be changed with an Option.
const (
	DefaultTimeout     = 5 * time.Second // per tailscaled or URL request, as derper
	DefaultPositiveTTL = time.Minute     // how long a URL "Allow": true is reused
	DefaultNegativeTTL = 5 * time.Second // how long a URL "Allow": false is reused
	DefaultCacheSize   = 1024            // answers kept at most (key + source each)
)

// Errors a refusal wraps, for callers and tests that want to tell the reasons apart.
var (
	// ErrNotListed: the key is not in relay.verify_clients.allow.
	ErrNotListed = errors.New("not in relay.verify_clients.allow")
	// ErrNotInNetmap: tailscaled answered 404, the key is no node it can see.
	ErrNotInNetmap = errors.New("not found in the local tailscaled's netmap")
	// ErrTailscaledTooOld: tailscaled cannot look up node keys (answers "invalid 'addr' parameter").
	ErrTailscaledTooOld = errors.New("tailscaled is too old to look up node keys (needs a version that supports whois by node key)")
	// ErrNoTailscaled: the socket is missing or nothing listens on it.
	ErrNoTailscaled = errors.New("tailscaled is not reachable")
	// ErrDenied: the admission URL answered {"Allow": false}.
	ErrDenied = errors.New(`admission URL answered {"Allow":false}`)
	// ErrUnreachable: the admission URL could not be asked (transport error or timeout).
	ErrUnreachable = errors.New("admission URL unreachable")
)

// Mode is how a Verifier decides.
type Mode int

const (
	// ModeChecks asks the configured checks (allow, tailscaled_socket, url).
	ModeChecks Mode = iota
	// ModeAuto: no check is configured and the listener is reachable beyond loopback. The
	// local tailscaled, found at the usual socket paths, is asked; without it every client
	// is refused.
	ModeAuto
	// ModeOpen admits everyone: verify_clients.open, or no check on a loopback-only listener.
	ModeOpen
)

// Verifier runs the configured checks. It is safe for concurrent use.
type Verifier struct {
	log       *slog.Logger
	mode      Mode
	reachable bool    // the listener accepts connections from beyond loopback
	checks    []check // cheapest first
	// probeEvery is how often Run asks tailscaled whether it can answer.
	probeEvery time.Duration
	stats      counters
	// lastErr is the most recent check failure (not a plain "no"), for status.
	lastErr atomic.Pointer[timedError]
	// failOpenLog limits the fail-open warning so an outage does not flood the log.
	failOpenLog logLimiter
}

// check is one admission check.
type check interface {
	name() string
	// ask answers for key (in nodekey: form) from src.
	ask(ctx context.Context, key string, src netip.Addr) verdict
	// preflight probes that the check can answer at all.
	preflight(ctx context.Context) error
}

// idleCloser is a check holding idle connections (to tailscaled or the URL).
type idleCloser interface{ closeIdle() }

// Close drops idle connections to tailscaled and the admission URL, e.g. when a reloaded
// config replaces this Verifier. Checks still in flight finish.
func (v *Verifier) Close() {
	for _, c := range v.checks {
		if ic, ok := c.(idleCloser); ok {
			ic.closeIdle()
		}
	}
}

// verdict is one check's answer.
type verdict struct {
	yes bool
	// failed: the check could not answer (as opposed to a definite no). With yes, the
	// client is admitted anyway (fail_open).
	failed bool
	reason error  // why not, or why it could not answer
	detail string // for the log on yes, e.g. the node's name
}

// Option changes a default of New.
type Option func(*options)

type options struct {
	timeout        time.Duration
	positiveTTL    time.Duration
	negativeTTL    time.Duration
	cacheSize      int
	now            func() time.Time
	urlTransport   http.RoundTripper
	failOpenPeriod time.Duration
	listen         string
	sockets        []string
}

// WithTimeout bounds each request to tailscaled and to the admission URL (default 5 s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithCacheTTL sets how long admission URL answers are reused: positive for "Allow": true,
// negative for "Allow": false (0 turns that cache off).
func WithCacheTTL(positive, negative time.Duration) Option {
	return func(o *options) { o.positiveTTL, o.negativeTTL = positive, negative }
}

// WithCacheSize bounds the number of cached admission answers.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// WithClock replaces time.Now (for cache expiry in tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithURLTransport sets the HTTP transport for the admission URL (e.g. to trust a private
// CA). The default is a clone of http.DefaultTransport.
func WithURLTransport(rt http.RoundTripper) Option { return func(o *options) { o.urlTransport = rt } }

// WithListener names the DERP listen address (host:port) the verifier guards. Without a
// configured check, a loopback-only listener admits everyone (trying the relay on one's own
// machine needs nothing) and any other asks the local tailscaled or refuses. The default is
// a reachable listener.
func WithListener(listen string) Option { return func(o *options) { o.listen = listen } }

// WithTailscaledSockets replaces DefaultTailscaledSockets, where a verifier without a
// configured check looks for the local tailscaled.
func WithTailscaledSockets(paths ...string) Option {
	return func(o *options) { o.sockets = paths }
}

// New builds a Verifier from the relay.verify_clients section, after checking it (errors
// name the keys under relay.verify_clients).
func New(cfg Config, log *slog.Logger, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("relay.verify_clients", err)
		return nil, ps
	}
	o := options{
		timeout:        DefaultTimeout,
		positiveTTL:    DefaultPositiveTTL,
		negativeTTL:    DefaultNegativeTTL,
		cacheSize:      DefaultCacheSize,
		now:            time.Now,
		failOpenPeriod: time.Minute,
		sockets:        DefaultTailscaledSockets,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("verify: timeout must be positive, got %v", o.timeout)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{log: log.With("component", "verify"), reachable: !LoopbackOnly(o.listen), probeEvery: 5 * time.Second}
	v.failOpenLog.period = o.failOpenPeriod
	if len(cfg.Allow) > 0 {
		a, err := newAllowList(cfg.Allow)
		if err != nil {
			return nil, err
		}
		v.checks = append(v.checks, a)
	}
	if cfg.TailscaledSocket != "" {
		v.checks = append(v.checks, newTailscaled([]string{cfg.TailscaledSocket}, false, o))
	}
	if cfg.URL != "" {
		u, err := newAdmissionURL(cfg.URL, cfg.FailOpen, o, &v.stats)
		if err != nil {
			return nil, err
		}
		v.checks = append(v.checks, u)
	}
	switch {
	case len(v.checks) > 0:
		v.mode = ModeChecks
	case cfg.Open || !v.reachable:
		v.mode = ModeOpen
	default:
		if len(o.sockets) == 0 {
			return nil, errors.New("verify: no tailscaled socket paths to look at")
		}
		v.mode = ModeAuto
		v.checks = []check{newTailscaled(o.sockets, true, o)}
	}
	return v, nil
}

// Mode says how the verifier decides.
func (v *Verifier) Mode() Mode { return v.mode }

// Configured reports whether a check is configured (allow, tailscaled_socket, url).
func (v *Verifier) Configured() bool { return v.mode == ModeChecks }

// Checks names the checks in the order they are asked (in ModeAuto: tailscaled).
func (v *Verifier) Checks() []string {
	names := make([]string, len(v.checks))
	for i, c := range v.checks {
		names[i] = c.name()
	}
	return names
}

// Check admits (nil) or refuses (an error saying why) the client with node key from source
// (the zero Addr when unknown). The first check that says yes admits; the others are not
// asked. With fail_open, an unreachable admission URL counts as the URL check's yes (as with
// derper, only for transport errors and timeouts). A refusal is a *RefusedError listing
// every check's reason.
func (v *Verifier) Check(ctx context.Context, key [32]byte, source netip.Addr) error {
	if v.mode == ModeOpen {
		v.stats.admitted.Add(1)
		v.stats.unverified.Add(1)
		return nil
	}
	nk := NodeKeyString(key)
	source = source.Unmap().WithZone("")
	refused := &RefusedError{}
	for _, c := range v.checks {
		cs := v.stats.check(c.name())
		vd := c.ask(ctx, nk, source)
		yes, reason, failed := vd.yes, vd.reason, vd.failed
		switch {
		case yes && failed: // only fail_open admits without an answer
			cs.errors.Add(1)
			v.noteError(c.name(), reason)
			v.stats.failOpen.Add(1)
			v.stats.admitted.Add(1)
			if n, ok := v.failOpenLog.allow(time.Now()); ok {
				v.log.Warn("admission URL unreachable; admitting client (fail_open)", "key", nk,
					"source", source.String(), "err", reason, "suppressed", n)
			}
			return nil
		case yes:
			cs.admitted.Add(1)
			v.stats.admitted.Add(1)
			if v.log.Enabled(ctx, slog.LevelDebug) {
				v.log.Debug("client admitted", "key", nk, "source", source.String(), "check", c.name(), "detail", vd.detail)
			}
			return nil
		case failed:
			cs.errors.Add(1)
			v.noteError(c.name(), reason)
		default:
			cs.refused.Add(1)
		}
		refused.Reasons = append(refused.Reasons, reason)
	}
	v.stats.refused.Add(1)
	return refused
}

// Preflight asks each configured check whether it can answer at all (tailscaled reachable
// and new enough, the admission URL speaking the protocol), without touching counters or
// caches. The relay can log its result at start so a broken setup shows before the first
// client is refused.
func (v *Verifier) Preflight(ctx context.Context) error {
	var errs []error
	for _, c := range v.checks {
		if err := c.preflight(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name(), err))
		}
	}
	return errors.Join(errs...)
}

func (v *Verifier) noteError(check string, err error) {
	v.lastErr.Store(&timedError{at: time.Now(), msg: check + ": " + err.Error()})
}

// RefusedError lists why each configured check did not admit a client.
type RefusedError struct {
	Reasons []error
}

func (e *RefusedError) Error() string {
	msgs := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		msgs[i] = r.Error()
	}
	return "not admitted: " + strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is find the sentinel errors of each reason.
func (e *RefusedError) Unwrap() []error { return e.Reasons }

// NodeKeyString is a node key's text form: "nodekey:" and 64 lowercase hex digits.
func NodeKeyString(key [32]byte) string {
	return "nodekey:" + hex.EncodeToString(key[:])
}

// ParseNodeKey reads "nodekey:" and 64 hex digits (either case).
func ParseNodeKey(s string) ([32]byte, error) {
	var k [32]byte
	h, ok := strings.CutPrefix(s, "nodekey:")
	if !ok {
		return k, fmt.Errorf("node key %q: want the nodekey: prefix", s)
	}
	if len(h) != 64 {
		return k, fmt.Errorf("node key %q: want 64 hex digits after nodekey:, got %d characters", s, len(h))
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return k, fmt.Errorf("node key %q: %w", s, err)
	}
	return k, nil
}

// sourceString is the client IP as the admission protocol carries it ("" when unknown).
func sourceString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
