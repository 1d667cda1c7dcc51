// Package web is the daemon's own web page: a login-protected dashboard built from the
// status snapshots the agent already makes, a settings form whose changes go through the
// daemon's validator, and /healthz. The page is plain HTML, CSS and JS embedded in the
// binary (assets/); it runs on its own listener (web.listen), never on the DERP port, and
// by default answers only clients on the LAN side (private, loopback, link-local and
// tailnet addresses).
//
// The package owns its Config and the login (auth.go); what it shows and changes comes
// through Options (funcs and a small Settings interface) that the agent fills in, so it
// imports no other part.
package web

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Config is the web section.
type Config struct {
	// Listen is the page's address ("" turns the page off), e.g. ":8021".
	Listen string `yaml:"listen"`
	// AllowPublic lets clients from public addresses in; by default only the LAN side
	// (private, loopback, link-local, ULA and tailnet 100.64/10 addresses) gets an answer.
	AllowPublic bool `yaml:"allow_public"`
}

// SetDefaults implements the loader's part config; nothing to fill.
func (c *Config) SetDefaults() {}

// Validate checks the listen address.
func (c *Config) Validate() error {
	var ps field.Problems
	if c.Listen != "" {
		ps.HostPort("listen", c.Listen)
	}
	return ps.Err()
}

// Counters are the relay's totals now; the page samples them once a minute.
type Counters struct {
	BytesIn, BytesOut, Clients int64
}

// Settings reads and changes the options the page offers. Current is the form as JSON
// (the file, its format and each option's key, label, kind and value). Apply validates the
// changed config with the daemon's own validator and writes it only when it has no
// problems (which it returns, each naming its key); a written config is then reloaded.
type Settings interface {
	Current() (any, error)
	Apply(changes map[string]string) (problems []string, err error)
}

// Options are what the page shows and changes; the agent fills them in (Logger and the
// funcs are required).
type Options struct {
	Config   Config
	StateDir string // holds web.passwd
	Logger   *slog.Logger
	Status   func(context.Context) any // the daemon's status snapshot, as JSON
	Counters func() Counters           // the relay's totals (zero when it is off)
	Logs     *LogTail                  // recent log lines (nil: none)
	Settings Settings                  // nil: the settings form is read-only
	// Snippets returns the DERP map in the formats to paste (tailscale, headscale; nil
	// while the relay has none), recording it as handed out when copied is set.
	Snippets func(copied bool) map[string]string
}

// Server is the web page.
type Server struct {
	o       Options
	log     *slog.Logger
	auth    *auth
	traffic *traffic
}

// The page's files, embedded gzip-compressed (assets/*.gz, made from the files beside them
// by `go test ./web -run TestAssets -update`; no build step at install): a third of the
// bytes in the binary, sent as they are to browsers (all accept gzip). The login page is
// small and filled in per answer, so it stays plain.
var (
	//go:embed assets/index.html.gz
	indexHTML string
	//go:embed assets/app.js.gz
	appJS string
	//go:embed assets/app.css.gz
	appCSS string
	//go:embed assets/login.html
	loginHTML string
)

// New returns the page for o. A state dir without a password gets a generated one, logged
// once: the only way to learn it.
func New(o Options) (*Server, error) {
	s := &Server{o: o, log: o.Logger.With("component", "web"), auth: newAuth(o.StateDir), traffic: &traffic{}}
	pw, err := ensurePassword(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if pw != "" {
		s.log.Warn("web: generated a login password (shown once; change it with `edgerelay web passwd`)",
			"password", pw, "file", PasswordFile(o.StateDir))
	}
	return s, nil
}

// Run serves the page on Config.Listen until ctx ends, sampling the relay's counters
// once a minute for the traffic chart.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.o.Config.Listen)
	if err != nil {
		return fmt.Errorf("web.listen: %w", err)
	}
	s.log.Info("web page listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	tick := time.NewTicker(time.Minute) // collected once Run returns (Go 1.23+): no Stop
	s.traffic.add(time.Now(), s.o.Counters())
	for {
		select {
		case <-ctx.Done():
			srv.Close()
			<-errc
			return nil
		case err := <-errc: // Serve failed (only Close above ends it without an error of its own)
			return err
		case now := <-tick.C:
			s.traffic.add(now, s.o.Counters())
		}
	}
}

// lanSide reports whether a client at remote (host:port) is on the LAN side.
func lanSide(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || tailnet.Contains(a)
}

var tailnet = netip.MustParsePrefix("100.64.0.0/10")
