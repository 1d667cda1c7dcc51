package acme

import (
	"crypto/x509"
	"slices"
	"strings"
	"time"
)

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
