package acme

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/provider"
)

// Let's Encrypt's profiles with the lifetimes it documents (classic 90 days, shortlived
// 160 hours); tlsserver is given 45 days here, the lifetime Let's Encrypt announced for it,
// so each profile is told apart by what Pebble issues.
var leProfiles = map[string]time.Duration{
	"classic":    90 * 24 * time.Hour,
	"tlsserver":  45 * 24 * time.Hour,
	"shortlived": 160 * time.Hour,
}

// TestPebbleProfile orders under each profile from Pebble v2.8.0 configured with Let's
// Encrypt's profiles: the order names the profile, the issued certificate has that
// profile's lifetime, a short-lived certificate's next check or renewal falls well inside
// its lifetime, and an unknown profile is refused before any order with the CA's choices.
func TestPebbleProfile(t *testing.T) {
	bin := testenv.BuildPebble(t)
	if !testenv.InNetNS(t) {
		return
	}
	ns := testenv.StartBIND9(t, "example.test")
	peb := testenv.StartPebble(t, ns.Addr, testenv.PebbleOptions{Binary: bin, Profiles: leProfiles})
	dnsp, err := provider.New(provider.Config{Type: "rfc2136", Server: ns.Addr, KeyName: ns.KeyName, KeyAlg: ns.KeyAlg, Key: ns.Key}, provider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	newManager := func(profile string, cnt *counter) *Manager {
		cfg := Config{
			Email: "admin@example.test", Directory: peb.DirectoryURL, Domains: []string{"derp.example.test"},
			Resolvers: []string{ns.Addr}, PropagationTimeout: 30 * time.Second, CACertFile: peb.CACertFile,
			Profile: profile,
		}
		log, _ := testLog(t)
		m, err := New(cfg, dnsp, stateDir, log, WithTiming(Timing{PollInterval: 200 * time.Millisecond}),
			WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { cnt.rt = rt; return cnt }))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, profile := range []string{"shortlived", "classic", "tlsserver"} {
		cnt := &counter{}
		m := newManager(profile, cnt)
		if m.Leaf() != nil {
			t.Fatalf("%s: reused a certificate of another profile from state_dir", profile)
		}
		if err := m.Renew(context.Background()); err != nil {
			t.Fatalf("%s: %v; pebble log:\n%s", profile, err, peb.Log())
		}
		leaf := m.Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore) + time.Second // Pebble's NotAfter is inclusive
		t.Logf("profile %s: certificate valid %v (%v to %v)", profile, life, leaf.NotBefore, leaf.NotAfter)
		if life != leProfiles[profile] {
			t.Errorf("profile %s: lifetime %v, want %v", profile, life, leProfiles[profile])
		}
		cnt.mu.Lock()
		sent := slices.Clone(cnt.profiles)
		cnt.mu.Unlock()
		if !slices.Equal(sent, []string{profile}) {
			t.Errorf("orders named profiles %q, want [%q]", sent, profile)
		}
		at, renew, why := m.nextRenewal(context.Background())
		t.Logf("profile %s: next %v at %v (%s)", profile, map[bool]string{true: "renewal", false: "check"}[renew], at.Round(time.Second), why)
		if limit := leaf.NotBefore.Add(life * 2 / 3); at.After(limit) {
			t.Errorf("profile %s: next action at %v, after two thirds of the lifetime (%v)", profile, at, limit)
		}
		if profile == "shortlived" && at.After(time.Now().Add(life/10+time.Minute)) && !renew {
			t.Errorf("short-lived certificate: next ARI check at %v, more than a tenth of its lifetime away", at)
		}
		// A restart with the same profile reuses the certificate from state_dir.
		if again := newManager(profile, &counter{}); again.Leaf() == nil || !again.Leaf().Equal(leaf) {
			t.Errorf("profile %s: stored certificate not reused after a restart", profile)
		}
	}

	cnt := &counter{}
	err = newManager("longlived", cnt).Renew(context.Background())
	if err == nil || !strings.Contains(err.Error(), `acme.profile "longlived"`) || !strings.Contains(err.Error(), "classic, shortlived, tlsserver") {
		t.Errorf("unknown profile: %v", err)
	} else {
		t.Logf("unknown profile: %v", err)
	}
	if n := cnt.orders.Load(); n != 0 {
		t.Errorf("%d orders sent for an unknown profile", n)
	}
}
