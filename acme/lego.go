package acme

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	legolog "github.com/go-acme/lego/v4/log"
	"github.com/miekg/dns"
)

// lego keeps its logger, the resolvers of its propagation check and its DNS timeout in
// package variables. Every call into lego runs inside a flow, one at a time in the process,
// which first makes those variables its Manager's. A Manager whose context has ended starts
// no flow, and its Run returns only after its last flow: an old Manager can neither write
// them nor use them once a new one has started.
var legoMu sync.Mutex

// flow runs f with the lego client of m (registering the account on first use), as the only
// lego work in the process. Once ctx ends, no request goes to the CA (flowTransport), the
// DNS-01 solver's API calls and the propagation poll stop, so f ends soon after ctx does.
func (m *Manager) flow(ctx context.Context, f func(*lego.Client) error) error {
	legoMu.Lock()
	defer legoMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	m.flowCtx.Store(&ctx)
	defer func() {
		m.flowCtx.Store(nil)
		m.closeIdle()
	}()
	legolog.Logger = legoLogger{m.log.With("lib", "lego")}
	client, err := m.clientLocked()
	if err != nil {
		return err
	}
	rs := m.resolvers()
	err = client.Challenge.SetDNS01Provider(m.solver,
		dns01.CondOption(len(rs) > 0, dns01.AddRecursiveNameservers(rs)),
		dns01.AddDNSTimeout(m.timing.DNSTimeout),
		dns01.WrapPreCheck(func(_, fqdn, value string, check dns01.PreCheckFunc) (bool, error) {
			if err := ctx.Err(); err != nil {
				return true, err // ends lego's propagation wait at once
			}
			return check(fqdn, value)
		}))
	if err != nil {
		return err
	}
	return f(client)
}

// flowContext is the context of the flow running now (Background outside one).
func (m *Manager) flowContext() context.Context {
	if c := m.flowCtx.Load(); c != nil {
		return *c
	}
	return context.Background()
}

// resolvers are acme.resolvers, else the system's (lego's own default, set again because
// another Manager may have changed it).
func (m *Manager) resolvers() []string {
	if len(m.solver.resolvers) > 0 {
		return m.solver.resolvers
	}
	if c, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(c.Servers) > 0 {
		return dns01.ParseNameservers(c.Servers)
	}
	return nil // keep what lego has
}

// flowTransport refuses the requests of a flow whose context has ended, so lego's order
// unwinds at its next request to the CA instead of going on (a request already sent ends
// within the HTTP client's timeout).
type flowTransport struct {
	next http.RoundTripper
	m    *Manager
}

func (t *flowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.m.flowContext().Err(); err != nil {
		return nil, fmt.Errorf("acme: stopping: %w", err)
	}
	return t.next.RoundTrip(req)
}

// legoLogger sends lego's own log lines to slog: its progress chatter at debug, its
// warnings at warn.
type legoLogger struct{ l *slog.Logger }

func (g legoLogger) out(s string) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "[WARN] "):
		g.l.Warn(strings.TrimPrefix(s, "[WARN] "))
	default:
		g.l.Debug(strings.TrimPrefix(s, "[INFO] "))
	}
}

func (g legoLogger) Fatal(args ...any)                 { g.l.Error(fmt.Sprint(args...)) }
func (g legoLogger) Fatalln(args ...any)               { g.l.Error(fmt.Sprint(args...)) }
func (g legoLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g legoLogger) Print(args ...any)                 { g.out(fmt.Sprint(args...)) }
func (g legoLogger) Println(args ...any)               { g.out(fmt.Sprint(args...)) }
func (g legoLogger) Printf(format string, args ...any) { g.out(fmt.Sprintf(format, args...)) }
