package ddns

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/agent/field"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// AddressChange tells subscribers that the address selected for a record changed. New is
// the zero Addr when no eligible address is left (the DNS record is then kept as it was).
type AddressChange struct {
	Record string // fully qualified name without the trailing dot
	Type   string // A or AAAA
	Old    netip.Addr
	New    netip.Addr
	At     time.Time
}

// RecordWrite tells subscribers that a record was written (Err nil) or that writing it
// failed: the first failure of a streak only, retries that fail again are not repeated.
type RecordWrite struct {
	Record string // fully qualified name without the trailing dot
	Type   string
	Old    string     // what DNS held before ("none", or addresses joined with commas)
	New    netip.Addr // the address written, or that could not be
	Err    error
	At     time.Time
}

// RecordState is one record's status for `edgerelay status`.
type RecordState struct {
	Name        string     `json:"name"` // fully qualified, no trailing dot
	Type        string     `json:"type"`
	Source      string     `json:"source"`              // "interface eth0", "url https://…", "stun host:port", "value"
	Address     netip.Addr `json:"address"`             // selected now (zero: none eligible)
	Published   netip.Addr `json:"published"`           // last address confirmed in DNS
	Changed     time.Time  `json:"changed"`             // when Address last changed
	PublishedAt time.Time  `json:"published_at"`        // when Published was last written or confirmed
	Error       string     `json:"error,omitempty"`     // last failure, cleared on success
	NextRetry   time.Time  `json:"next_retry,omitzero"` // set while failing
}

// Timing tunes the update loop; zero fields take the defaults.
type Timing struct {
	Debounce   time.Duration // quiet time after an address event before acting (500 ms)
	MaxDelay   time.Duration // act at the latest this long after the first event of a burst (2 s)
	Recheck    time.Duration // safety-net resync of sources and comparison with DNS (5 min)
	RetryMin   time.Duration // first retry after a failed update (2 s), doubling...
	RetryMax   time.Duration // ...up to this (2 min)
	APITimeout time.Duration // bound on one provider call (30 s)
	// STUNTimeout bounds asking one STUN server (10 s: requests resent after 0.5, 1, 2, 4 s).
	STUNTimeout time.Duration
}

func (t *Timing) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Debounce, 500*time.Millisecond)
	def(&t.MaxDelay, 2*time.Second)
	def(&t.Recheck, 5*time.Minute)
	def(&t.RetryMin, 2*time.Second)
	def(&t.RetryMax, 2*time.Minute)
	def(&t.APITimeout, 30*time.Second)
	def(&t.STUNTimeout, 10*time.Second)
}

// Option adjusts an Updater.
type Option func(*Updater)

// WithSubscriber registers f to receive every AddressChange. f runs on the update loop and
// must return quickly.
func WithSubscriber(f func(AddressChange)) Option {
	return func(u *Updater) { u.subs = append(u.subs, f) }
}

// WithWrites registers f to receive every RecordWrite. f runs on the update loop and must
// return quickly.
func WithWrites(f func(RecordWrite)) Option {
	return func(u *Updater) { u.writes = append(u.writes, f) }
}

// WithProvider uses p instead of building one from the config (sharing one with acme).
func WithProvider(p provider.Provider) Option { return func(u *Updater) { u.prov = p } }

// WithStates has Run publish every record's state (what Current returns) after each pass of
// its loop, for a status that never waits on the updater. f must return quickly.
func WithStates(f func([]RecordState)) Option { return func(u *Updater) { u.states = f } }

// WithHTTPClient sets the client for url sources and for HTTP DNS APIs.
func WithHTTPClient(c *http.Client) Option { return func(u *Updater) { u.hc = c } }

// WithMeshSTUN gives the STUN servers `stun: auto` asks (the mesh peers', host:port).
func WithMeshSTUN(servers []string) Option { return func(u *Updater) { u.meshSTUN = servers } }

// WithTiming overrides the loop timing.
func WithTiming(t Timing) Option { return func(u *Updater) { u.timing = t } }

// Updater keeps the configured records up to date. Build it with New and call Run.
type Updater struct {
	zone     string // with trailing dot
	ttl      time.Duration
	stateDir string
	log      *slog.Logger
	prov     provider.Provider
	hc       *http.Client
	timing   Timing
	subs     []func(AddressChange)
	writes   []func(RecordWrite)
	states   func([]RecordState)
	meshSTUN []string

	mu      sync.Mutex // guards records' exported state for Current
	records []*record
	state   savedState

	zoneRecs []libdns.Record // last listing of the zone, reused within one pass
	zoneAt   time.Time
}

// New builds an Updater from the ddns section, after checking it (errors name the keys under
// ddns). stateDir holds the last published addresses ("" keeps them in memory only).
func New(cfg Config, stateDir string, log *slog.Logger, opts ...Option) (*Updater, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("ddns", err)
		return nil, ps
	}
	u := &Updater{
		zone:     provider.Fqdn(cfg.Zone),
		ttl:      cfg.TTL,
		stateDir: stateDir,
		log:      log.With("component", "ddns"),
	}
	for _, o := range opts {
		o(u)
	}
	u.timing.setDefaults()
	if u.prov == nil {
		p, err := provider.New(cfg.Provider, provider.Options{HTTPClient: u.hc})
		if err != nil {
			return nil, fmt.Errorf("ddns.provider: %w", err)
		}
		u.prov = p
	}
	st, err := loadState(stateDir)
	if err != nil {
		// A damaged state file only costs one comparison with DNS; do not refuse to start.
		u.log.Warn("ignoring unreadable state", "err", err)
	}
	u.state = st
	for _, rc := range cfg.Records {
		r := newRecord(rc, u.zone)
		if s, ok := st.Records[r.key]; ok {
			r.published, r.pubAt = s.Address, s.Published
			r.selected = s.Address // kept while it stays eligible, so a restart does not flap
		}
		u.records = append(u.records, r)
	}
	return u, nil
}

// Current returns every record's state.
func (u *Updater) Current() []RecordState {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]RecordState, 0, len(u.records))
	for _, r := range u.records {
		out = append(out, RecordState{
			Name: r.fqdn, Type: r.cfg.Type, Source: r.source(),
			Address: r.selected, Published: r.published, Changed: r.changed, PublishedAt: r.pubAt,
			Error: r.lastErr, NextRetry: r.nextTry,
		})
	}
	return out
}

// Run keeps the records up to date until ctx ends. Kernel address events (and the periodic
// safety-net resync) trigger a recomputation; a record is written only when its selected
// address differs from what DNS holds. Provider failures are retried with backoff and never
// end Run.
func (u *Updater) Run(ctx context.Context) error {
	kick := make(chan time.Time, 1)
	needsNetlink := slices.ContainsFunc(u.records, func(r *record) bool { return r.fixed == netip.Addr{} })
	if needsNetlink {
		// URL and STUN sources are re-asked on address and link events too (a WAN change
		// shows up there first), and at every Recheck.
		w := &netWatcher{log: u.log}
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { w.run(ctx, kick) })
	}
	send(kick, time.Now())
	u.publishStates()

	var pendingSince, quietUntil time.Time
	nextRecheck := time.Now().Add(u.timing.Recheck)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		wake := nextRecheck
		if !pendingSince.IsZero() {
			wake = minTime(wake, minTime(quietUntil, pendingSince.Add(u.timing.MaxDelay)))
		}
		for _, r := range u.records {
			if !r.nextTry.IsZero() {
				wake = minTime(wake, r.nextTry)
			}
		}
		timer.Reset(max(wake.Sub(now), 0))
		select {
		case <-ctx.Done():
			return nil
		case t := <-kick:
			if pendingSince.IsZero() {
				pendingSince = t
			}
			quietUntil = time.Now().Add(u.timing.Debounce)
			continue
		case <-timer.C:
		}
		now = time.Now()
		recheck := !now.Before(nextRecheck)
		if recheck {
			nextRecheck = now.Add(u.timing.Recheck)
		}
		if recheck || (!pendingSince.IsZero() && (!now.Before(quietUntil) || !now.Before(pendingSince.Add(u.timing.MaxDelay)))) {
			u.refresh(ctx, pendingSince)
			pendingSince = time.Time{}
		}
		for _, r := range u.records {
			if r.nextTry.IsZero() || !now.Before(r.nextTry) || recheck {
				u.reconcile(ctx, r, recheck)
			}
		}
		u.publishStates()
	}
}

func (u *Updater) publishStates() {
	if u.states != nil {
		u.states(u.Current())
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// refresh recomputes every record's selected address from its source. Sources are read in
// parallel, so a slow or dead URL or STUN server delays the others by its own timeout at
// most, not by the sum of all of them.
func (u *Updater) refresh(ctx context.Context, eventAt time.Time) {
	type result struct {
		addr netip.Addr
		ok   bool
	}
	results := make([]result, len(u.records))
	var wg sync.WaitGroup
	for i, r := range u.records {
		wg.Go(func() {
			a, ok := u.resolve(ctx, r)
			results[i] = result{a, ok}
		})
	}
	wg.Wait()
	for i, r := range u.records {
		next, ok := results[i].addr, results[i].ok
		if !ok || next == r.selected {
			continue
		}
		old := r.selected
		u.mu.Lock()
		r.selected, r.changed = next, time.Now()
		if next.IsValid() && !eventAt.IsZero() && r.eventAt.IsZero() {
			r.eventAt = eventAt
		}
		// A new address cancels a pending backoff: try it at once.
		r.nextTry, r.fails = time.Time{}, 0
		u.mu.Unlock()
		if next.IsValid() {
			u.log.Info("address changed", "record", r.fqdn, "type", r.cfg.Type, "source", r.source(), "old", fmtAddr(old), "new", next)
		}
		ev := AddressChange{Record: r.fqdn, Type: r.cfg.Type, Old: old, New: next, At: r.changed}
		for _, f := range u.subs {
			f(ev)
		}
	}
}

func fmtAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

// reconcile makes DNS hold r's selected address. verify forces a comparison with DNS even
// when the saved state says the record is already right.
func (u *Updater) reconcile(ctx context.Context, r *record, verify bool) {
	want := r.selected
	if !want.IsValid() {
		u.mu.Lock()
		r.nextTry = time.Time{} // nothing to retry until an address comes back
		u.mu.Unlock()
		return
	}
	if want == r.published && !verify && !r.verified.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, u.timing.APITimeout)
	defer cancel()

	inDNS, getErr := u.lookup(ctx, r)
	if getErr == nil && len(inDNS) == 1 && inDNS[0] == want {
		u.done(r, want, "", time.Now())
		return
	}
	if getErr != nil {
		// Without a read (an RFC 2136 key without transfer rights, say) the saved state is
		// all there is to compare with.
		u.log.Debug("cannot read records, comparing with saved state", "record", r.fqdn, "err", getErr)
		if want == r.published {
			u.done(r, want, "", time.Now())
			return
		}
	}
	old := fmtAddr(r.published)
	if getErr == nil {
		old = fmtAddrs(inDNS)
	}
	u.zoneRecs = nil // the zone is about to change
	err := u.write(ctx, r, want, inDNS)
	if err != nil {
		u.failed(r, err)
		return
	}
	u.done(r, want, old, time.Now())
}

// write replaces the record's RRset with want, leaving every other record alone.
func (u *Updater) write(ctx context.Context, r *record, want netip.Addr, inDNS []netip.Addr) error {
	if len(inDNS) > 1 {
		// Some providers (Cloudflare) refuse SetRecords on a name with several records of
		// the type: remove the extras first.
		var extra []libdns.Record
		for _, a := range inDNS {
			if a != want {
				extra = append(extra, libdns.Address{Name: r.rel, IP: a})
			}
		}
		if len(extra) == len(inDNS) {
			extra = extra[1:]
		}
		if _, err := u.prov.DeleteRecords(ctx, u.zone, extra); err != nil {
			return fmt.Errorf("removing stale %s records: %w", r.cfg.Type, err)
		}
	}
	_, err := u.prov.SetRecords(ctx, u.zone, []libdns.Record{libdns.Address{Name: r.rel, TTL: u.ttl, IP: want}})
	return err
}

// lookup returns the addresses DNS (the provider's API) holds for r. One listing of the
// zone (an AXFR for RFC 2136) serves every record checked in the same pass.
func (u *Updater) lookup(ctx context.Context, r *record) ([]netip.Addr, error) {
	if u.zoneRecs == nil || time.Since(u.zoneAt) > 2*time.Second {
		recs, err := u.prov.GetRecords(ctx, u.zone)
		if err != nil {
			return nil, err
		}
		u.zoneRecs, u.zoneAt = recs, time.Now()
	}
	recs := u.zoneRecs
	var out []netip.Addr
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Type != r.cfg.Type || !strings.EqualFold(libdns.AbsoluteName(rr.Name, u.zone), r.fqdn+".") {
			continue
		}
		if a, err := netip.ParseAddr(rr.Data); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

func fmtAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// done records a successful write (old != "") or confirmation (old == "").
func (u *Updater) done(r *record, a netip.Addr, old string, now time.Time) {
	u.mu.Lock()
	changed := r.published != a
	r.published, r.pubAt, r.verified = a, now, now
	r.fails, r.nextTry, r.lastErr = 0, time.Time{}, ""
	eventAt := r.eventAt
	r.eventAt = time.Time{}
	u.state.Records[r.key] = savedRecord{Address: a, Published: now}
	u.mu.Unlock()
	if old != "" {
		attrs := []any{"record", r.fqdn, "type", r.cfg.Type, "old", old, "new", a}
		if !eventAt.IsZero() {
			attrs = append(attrs, "since_event", now.Sub(eventAt).Round(time.Millisecond))
		}
		u.log.Info("record updated", attrs...)
		u.tellWrite(RecordWrite{Record: r.fqdn, Type: r.cfg.Type, Old: old, New: a, At: now})
	} else if changed {
		u.log.Info("record already up to date", "record", r.fqdn, "type", r.cfg.Type, "address", a)
	}
	if old != "" || changed {
		if err := saveState(u.stateDir, u.state); err != nil {
			u.log.Warn("cannot save state", "err", err)
		}
	}
}

func (u *Updater) failed(r *record, err error) {
	u.mu.Lock()
	r.fails++
	d := u.timing.RetryMin << min(r.fails-1, 20)
	d = min(d, u.timing.RetryMax)
	r.nextTry = time.Now().Add(d)
	first := r.lastErr == ""
	r.lastErr = err.Error()
	u.mu.Unlock()
	level := slog.LevelWarn
	if !first {
		level = slog.LevelDebug // the first failure of a streak is enough at warn
	}
	u.log.Log(context.Background(), level, "record update failed", "record", r.fqdn, "type", r.cfg.Type,
		"want", r.selected, "err", err, "attempt", r.fails, "retry_in", d)
	if first {
		u.tellWrite(RecordWrite{Record: r.fqdn, Type: r.cfg.Type, Old: fmtAddr(r.published), New: r.selected, Err: err, At: time.Now()})
	}
}

func (u *Updater) tellWrite(w RecordWrite) {
	for _, f := range u.writes {
		f(w)
	}
}
