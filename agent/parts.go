package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/ddns/provider"
	"github.com/edgerelay/edgerelay/netfilter"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"github.com/edgerelay/edgerelay/notify"
	"github.com/edgerelay/edgerelay/relay"
)

// parts lists the enabled parts of the current config. Each captures its own section, so a
// reload restarts only the parts whose section changed.
//
// Adding a part (web, …): give its package a Config with SetDefaults
// and Validate, add its section to agent/config (sections.go), and append a Part here
// whose Section is that Config and whose Run builds the part and runs it until ctx ends,
// publishing its state with setState for status. Events between parts go through the
// agent (a subscriber option on the producer, a small interface on the consumer).
func (a *Agent) parts() []Part {
	cfg := a.cfg
	ps := []Part{{
		Name:    "status",
		Section: []any{cfg.StateDir, cfg.MetricsListen},
		Run:     func(ctx context.Context) error { return a.serveStatus(ctx, cfg.StateDir, cfg.MetricsListen) },
	}}
	if cfg.Notify != nil && config.On(cfg.Notify.Enabled, true) {
		ps = append(ps, a.notifyPart(*cfg.Notify)) // first: the others' early events find it running
	}
	if config.On(cfg.Relay.Enabled, true) {
		ps = append(ps, a.relayPart(cfg.Relay.Config, cfg.StateDir))
	}
	if cfg.DDNS != nil && config.On(cfg.DDNS.Enabled, true) {
		ps = append(ps, a.ddnsPart(cfg.DDNS.Config, cfg.StateDir, cfg.Relay.Hostname, cfg.Relay.MeshSTUNServers()))
	}
	if cfg.ACME != nil && config.On(cfg.ACME.Enabled, true) {
		ps = append(ps, a.acmePart(*cfg.ACME, cfg.StateDir))
	}
	if cfg.Subnet != nil && config.On(cfg.Subnet.Enabled, true) {
		ps = append(ps, a.subnetPart(*cfg.Subnet, cfg.StateDir))
	}
	if cfg.PeerRelay != nil && config.On(cfg.PeerRelay.Enabled, true) {
		ps = append(ps, a.peerRelayPart(cfg.PeerRelay.Config, cfg.StateDir))
	}
	if cfg.Web.Listen != "" {
		ps = append(ps, a.webPart(cfg.Web, cfg.StateDir, cfg.Source))
	}
	return ps
}

func (a *Agent) relayPart(rc relay.Config, stateDir string) Part {
	return Part{
		Name:    "relay",
		Section: []any{rc, stateDir},
		Run: func(ctx context.Context) error {
			opts := relay.Options{Config: rc, StateDir: stateDir, Logger: a.log, Addrs: orLocal(a.Addrs(), rc.Hostname)}
			if rc.TLS.Mode == relay.TLSACME {
				opts.Certs = &a.certs
			}
			r, err := relay.New(opts)
			if err != nil {
				return err
			}
			defer publish(a, &a.relay, r)()
			defer a.dropMap()
			ctx, cancel := context.WithCancel(ctx)
			region := make(chan struct{})
			go func() {
				defer close(region)
				a.followRegion(ctx, r, rc, stateDir)
			}()
			defer func() { cancel(); <-region }()
			return r.Run(ctx)
		},
	}
}

func (a *Agent) ddnsPart(dc ddns.Config, stateDir, relayHost string, meshSTUN []string) Part {
	return Part{
		Name:    "ddns",
		Section: []any{dc, stateDir, relayHost, meshSTUN},
		Run: func(ctx context.Context) error {
			rr := relayRecord(dc, relayHost)
			defer setState(a, &a.ddnsState, nil)
			u, err := ddns.New(dc, stateDir, a.log, ddns.WithMeshSTUN(meshSTUN),
				ddns.WithSubscriber(func(ch ddns.AddressChange) {
					a.noteAddress(ch, rr)
					a.notify(&notify.Event{Event: notify.AddressChanged, Time: ch.At, Record: ch.Record, Type: ch.Type,
						Old: addrString(ch.Old), New: addrString(ch.New)})
				}),
				ddns.WithWrites(a.notifyWrite),
				ddns.WithStates(func(s []ddns.RecordState) { setState(a, &a.ddnsState, s) }))
			if err != nil {
				return err
			}
			return u.Run(ctx)
		},
	}
}

// noteAddress keeps the relay's current addresses (for derpmap and status) from the ddns
// record that publishes the relay's hostname, or from any record's public address when
// none does.
func (a *Agent) noteAddress(ch ddns.AddressChange, relayRecord string) {
	if relayRecord != "" && ch.Record != relayRecord || relayRecord == "" && ch.New.IsValid() && !ddns.IsPublic(ch.New) {
		return
	}
	a.mu.Lock()
	switch ch.Type {
	case "A":
		a.addrs.IPv4 = ch.New
	case "AAAA":
		a.addrs.IPv6 = ch.New
	}
	a.mu.Unlock()
	kick(a.regionKick)
	kick(a.peerKick)
}

// relayRecord is the fully qualified ddns record that publishes host, or "".
func relayRecord(dc ddns.Config, host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range dc.Records {
		if fqdn := ddns.RecordFQDN(r.Name, dc.Zone); fqdn != "" && fqdn == host {
			return fqdn
		}
	}
	return ""
}

func (a *Agent) acmePart(ac config.ACME, stateDir string) Part {
	return Part{
		Name:    "acme",
		Section: []any{ac, stateDir},
		Run: func(ctx context.Context) error {
			dns, err := provider.New(ac.DNSProvider, provider.Options{})
			if err != nil {
				return fmt.Errorf("acme.dns_provider: %w", err)
			}
			setState(a, &a.acmeState, &ACMEStatus{Domains: ac.Domains})
			defer setState(a, &a.acmeState, nil)
			m, err := acme.New(ac.Config, dns, stateDir, a.log, acme.WithSubscriber(func(c acme.CertChange) {
				setState(a, &a.acmeState, &ACMEStatus{Domains: ac.Domains, Issuer: c.Issuer, NotAfter: c.NotAfter})
				if c.Renewed {
					a.notify(&notify.Event{Event: notify.CertRenewed, Names: c.Domains, Expires: c.NotAfter})
				}
			}), acme.WithFailures(a.notifyOrderFailure))
			if err != nil {
				return err
			}
			defer publish(a, &a.acme, m)()
			a.certs.set(m)
			return m.Run(ctx)
		},
	}
}

func (a *Agent) subnetPart(sc config.Subnet, stateDir string) Part {
	return Part{
		Name:    "subnet",
		Section: []any{sc, stateDir},
		Undo: func(ctx context.Context) error {
			r, err := netfilter.New(sc.Config, stateDir, a.log)
			if err != nil {
				return err
			}
			return r.Remove(ctx)
		},
		Run: func(ctx context.Context) error {
			setState(a, &a.subnetState, &SubnetStatus{})
			defer setState(a, &a.subnetState, nil)
			r, err := netfilter.New(sc.Config, stateDir, a.log, netfilter.WithReports(func(rep netfilter.Report, err error) {
				setState(a, &a.subnetState, subnetStatus(rep, err))
			}))
			if err != nil {
				return err
			}
			return r.Run(ctx)
		},
	}
}

func (a *Agent) peerRelayPart(pc peerrelay.Config, stateDir string) Part {
	return Part{
		Name:    "peer_relay",
		Section: []any{pc, stateDir},
		Undo: func(ctx context.Context) error {
			r, err := peerrelay.New(pc, stateDir, a.log)
			if err != nil {
				return err
			}
			return r.Remove(ctx)
		},
		Run: func(ctx context.Context) error {
			r, err := peerrelay.New(pc, stateDir, a.log)
			if err != nil {
				return err
			}
			r.Reports = func(s peerrelay.Status) { setState(a, &a.peerRelayState, &s) }
			setState(a, &a.peerRelayState, &peerrelay.Status{Port: pc.Port})
			r.SetPublic(a.publicAddrs()) // before the first apply
			ctx, cancel := context.WithCancel(ctx)
			followed := make(chan struct{})
			go func() {
				a.followAddrs(ctx, "peer_relay", a.peerKick, func() { r.SetPublic(a.publicAddrs()) })
				close(followed)
			}()
			err = r.Run(ctx)
			cancel()
			<-followed
			setState(a, &a.peerRelayState, nil)
			return err
		},
	}
}

// certSwitch is the relay's certificate source in acme mode: it serves whatever the current
// ACME manager holds, so the acme part can restart (new config, new manager) without
// restarting the relay or dropping its connections.
type certSwitch struct {
	cur atomic.Pointer[acme.Manager]
}

func (s *certSwitch) set(m *acme.Manager) { s.cur.Store(m) }

var errNoACME = errors.New("acme: no certificate yet")

// GetCertificate implements relay.CertSource.
func (s *certSwitch) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := s.cur.Load()
	if m == nil {
		return nil, errNoACME
	}
	return m.GetCertificate(hello)
}

// Addrs returns the line's current addresses as ddns last saw them (zero when unknown).
func (a *Agent) Addrs() relay.Addrs {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addrs
}

// setState replaces what a part published for status.
func setState[T any](a *Agent, field *T, v T) {
	a.mu.Lock()
	defer a.mu.Unlock()
	*field = v
}

// publish makes a running part visible to status (and the other parts) for as long as its
// run lasts: the returned func takes it back unless a newer one replaced it.
func publish[T comparable](a *Agent, field *T, v T) (unpublish func()) {
	a.mu.Lock()
	*field = v
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if *field == v {
			var zero T
			*field = zero
		}
	}
}
