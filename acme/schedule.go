package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"
)

// When to order and renew: Run's loop, the CA's ARI window and the fallbacks.

// fallbackRenewAt is when to renew without ARI: once two thirds of the lifetime have passed
// (half for certificates shorter than ten days, as Let's Encrypt recommends).
func fallbackRenewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if life < 10*24*time.Hour {
		return leaf.NotBefore.Add(life / 2)
	}
	return leaf.NotBefore.Add(life * 2 / 3)
}

// retryDelay is the wait after the n-th consecutive failure (n ≥ 1): min, 10×min,
// 100×min, then max (Let's Encrypt suggests 1 min, 10 min, 100 min, then daily).
func retryDelay(n int, minD, maxD time.Duration) time.Duration {
	if n > 3 {
		return maxD
	}
	d := minD
	for i := 1; i < n; i++ {
		d *= 10
	}
	return min(d, maxD)
}

// covers reports whether leaf is valid for exactly the configured names (order ignored).
func covers(leaf *x509.Certificate, domains []string) bool {
	have := slices.Clone(leaf.DNSNames)
	want := make([]string, len(domains))
	for i, d := range domains {
		want[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	for i := range have {
		have[i] = strings.ToLower(have[i])
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

// lifeBound caps d (the interval between ARI checks, or the longest wait before retrying a
// failed order) at a tenth of leaf's lifetime, so a 6-day certificate is checked every
// 14.4 hours and retried at least that often, leaving many tries before it expires.
func lifeBound(leaf *x509.Certificate, d time.Duration) time.Duration {
	if leaf == nil {
		return d
	}
	return min(d, max(leaf.NotAfter.Sub(leaf.NotBefore)/10, time.Minute))
}

// Run keeps a valid certificate in service until ctx ends: it orders one when there is
// none, renews in the CA's ARI window (or at two thirds of the lifetime), and retries
// failures with backoff. Failures never end Run. It returns only once its work has stopped:
// an order in progress is abandoned (its challenge records removed), nothing is left
// running that could write the store or lego's settings.
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
		err := m.obtain(ctx) // returns soon after ctx ends, its work stopped
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fails++
			d := retryDelay(fails, m.timing.RetryMin, lifeBound(m.Leaf(), m.timing.RetryMax))
			retryAt = time.Now().Add(d)
			m.log.Warn("certificate order failed; the current certificate keeps serving", "err", err,
				"attempt", fails, "retry_in", d, "current_expires", m.Expiry())
			for _, f := range m.fails {
				f(OrderFailure{Domains: m.domains, Err: err, Attempt: fails, NotAfter: m.Expiry(), RetryIn: d})
			}
			continue
		}
		fails = 0
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
	var info *certificate.RenewalInfoResponse
	var ariErr error
	err := m.flow(ctx, func(client *lego.Client) error {
		info, ariErr = client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: leaf})
		return nil
	})
	if ctx.Err() != nil {
		return fallback, true, ""
	}
	if err != nil {
		m.log.Warn("cannot reach the CA to ask for its renewal window", "err", err)
		return pick(fallback, now.Add(lifeBound(leaf, m.timing.CheckInterval)), "CA unreachable, will ask again")
	}
	err = ariErr
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
