package acme

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/libdns/libdns"
)

// DNSProvider is what the DNS-01 solver needs from a DNS service: add and remove TXT
// records. ddns/provider.Provider satisfies it.
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// dnsSolver is lego's challenge.Provider (plus ProviderTimeout) writing the
// _acme-challenge TXT record through a libdns provider. It follows a CNAME on
// _acme-challenge (lego resolves it into EffectiveFQDN), so the record can live in a
// delegated zone, and it appends rather than replaces: a wildcard and its base name share
// one challenge name and both values must be present at once.
type dnsSolver struct {
	p         DNSProvider
	resolvers []string // host:port, or nil for the system's
	ttl       time.Duration
	timeout   time.Duration // propagation
	interval  time.Duration
	apiTime   time.Duration
	log       *slog.Logger
	// ctx is the context of the order being solved: the Manager's flow, which ends when the
	// acme part stops.
	ctx func() context.Context

	mu      sync.Mutex // lego presents authorizations in parallel
	present map[string]presented
}

// cleanupTime bounds removing a challenge record, also after the order was abandoned.
const cleanupTime = 30 * time.Second

type presented struct {
	zone string
	rec  libdns.TXT
}

func (s *dnsSolver) key(domain, keyAuth string) string { return domain + "\x00" + keyAuth }

// Present adds the TXT record for one authorization.
func (s *dnsSolver) Present(domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(domain, keyAuth)
	if err := s.ctx().Err(); err != nil {
		return err
	}
	zone, err := s.zoneOf(info.EffectiveFQDN)
	if err != nil {
		return err
	}
	rec := libdns.TXT{Name: libdns.RelativeName(info.EffectiveFQDN, zone), TTL: s.ttl, Text: info.Value}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx(), s.apiTime)
	defer cancel()
	if _, err := s.p.AppendRecords(ctx, zone, []libdns.Record{rec}); err != nil {
		return fmt.Errorf("adding TXT %s in zone %s: %w", info.EffectiveFQDN, zone, err)
	}
	if s.present == nil {
		s.present = map[string]presented{}
	}
	s.present[s.key(domain, keyAuth)] = presented{zone: zone, rec: rec}
	attrs := []any{"domain", domain, "record", info.EffectiveFQDN, "zone", zone}
	if info.EffectiveFQDN != info.FQDN {
		attrs = append(attrs, "cname_from", info.FQDN)
	}
	s.log.Info("DNS-01 challenge record added", attrs...)
	return nil
}

// CleanUp removes the TXT record Present added (only that value; other TXT records at the
// name stay). It runs also when the order was abandoned, so it is bounded by cleanupTime
// rather than ended by the order's cancellation: no challenge record is left behind.
func (s *dnsSolver) CleanUp(domain, _, keyAuth string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.key(domain, keyAuth)
	pr, ok := s.present[k]
	if !ok {
		return nil // Present failed before writing anything: nothing to remove
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx()), cleanupTime)
	defer cancel()
	if _, err := s.p.DeleteRecords(ctx, pr.zone, []libdns.Record{pr.rec}); err != nil {
		return fmt.Errorf("removing TXT %s in zone %s: %w", pr.rec.Name, pr.zone, err)
	}
	delete(s.present, k)
	s.log.Info("DNS-01 challenge record removed", "domain", domain, "record", libdns.AbsoluteName(pr.rec.Name, pr.zone))
	return nil
}

// Timeout bounds lego's propagation check.
func (s *dnsSolver) Timeout() (timeout, interval time.Duration) { return s.timeout, s.interval }

// zoneOf finds the zone holding fqdn by walking up to its SOA.
func (s *dnsSolver) zoneOf(fqdn string) (string, error) {
	var zone string
	var err error
	if len(s.resolvers) > 0 {
		zone, err = dns01.FindZoneByFqdnCustom(fqdn, s.resolvers)
	} else {
		zone, err = dns01.FindZoneByFqdn(fqdn)
	}
	if err != nil {
		return "", fmt.Errorf("finding the zone of %s (SOA lookup): %w", fqdn, err)
	}
	return strings.TrimSuffix(zone, ".") + ".", nil
}
