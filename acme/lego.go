package acme

import (
	"context"
	"fmt"
	"io"
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
// lego work in the process. ctx reaches every request to the CA, the DNS-01 solver's API
// calls and each propagation poll, so f ends soon after ctx does.
func (m *Manager) flow(ctx context.Context, f func(*lego.Client) error) error {
	legoMu.Lock()
	defer legoMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	m.flowCtx.Store(&ctx)
	defer m.flowCtx.Store(nil)
	defer m.closeIdle()
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

// flowTransport carries the flow's context into every request to the CA: a request of a
// Manager that is stopping fails at once, and one in flight is cancelled.
type flowTransport struct {
	next http.RoundTripper
	m    *Manager
}

func (t flowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	flow := t.m.flowContext()
	if err := flow.Err(); err != nil {
		return nil, fmt.Errorf("acme: stopping: %w", err)
	}
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(flow, cancel)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { stop(); cancel() }}
	return resp, nil
}

// releaseBody lets go of a request's context when its body is closed.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
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
