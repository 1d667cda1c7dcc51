package acme

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
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

// lifeBound caps d (the interval between ARI checks, or the longest wait before retrying a
// failed order) at a tenth of leaf's lifetime, so a 6-day certificate is checked every
// 14.4 hours and retried at least that often, leaving many tries before it expires.
func lifeBound(leaf *x509.Certificate, d time.Duration) time.Duration {
	if leaf == nil {
		return d
	}
	return min(d, max(leaf.NotAfter.Sub(leaf.NotBefore)/10, time.Minute))
}

// checkProfile makes sure the CA's directory offers profile (draft-ietf-acme-profiles: the
// "profiles" object in the directory's meta), so a typo is reported with the choices
// instead of as a refused order.
func checkProfile(hc *http.Client, directory, profile string) error {
	resp, err := hc.Get(directory)
	if err != nil {
		return fmt.Errorf("ACME directory %s: %w", directory, err)
	}
	defer resp.Body.Close()
	var dir struct {
		Meta struct {
			Profiles map[string]string `json:"profiles"`
		} `json:"meta"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil {
		return fmt.Errorf("ACME directory %s: %w", directory, err)
	}
	offered := dir.Meta.Profiles
	if _, ok := offered[profile]; ok {
		return nil
	}
	if len(offered) == 0 {
		return fmt.Errorf("acme.profile %q: the CA at %s offers no certificate profiles; remove acme.profile", profile, directory)
	}
	names := make([]string, 0, len(offered))
	for n := range offered {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("acme.profile %q: the CA at %s offers %s", profile, directory, strings.Join(names, ", "))
}
