// Package duckdnsfake is a local stand-in for DuckDNS's HTTP API (www.duckdns.org/spec.jsp),
// used by tests because the real service cannot be reached from test machines. It follows
// the documented behaviour of its one endpoint, GET /update: domains (comma-separated
// sub-names, with or without .duckdns.org) and token are required; ip sets the IPv4 or IPv6
// address given, and when left out the caller's IPv4 is detected unless ipv6 is given;
// txt sets the TXT value; clear=true clears both addresses (or, with txt, the TXT value);
// answers are OK or KO, and with verbose=true OK is followed by the current IPv4, IPv6 and
// UPDATED or NOCHANGE.
package duckdnsfake

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/edgerelay/edgerelay/ddns/internal/fakeapi"
)

// Domain is one DuckDNS name's values.
type Domain struct {
	IPv4, IPv6 string
	TXT        string
}

// Server is the fake API.
type Server struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	domains  map[string]*Domain // sub-name → values
	requests []url.Values
}

// New starts a fake whose account has token and the given sub-names (e.g. "home").
func New(token string, subnames ...string) *Server {
	s := &Server{token: token, domains: map[string]*Domain{}}
	for _, n := range subnames {
		s.domains[n] = &Domain{}
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that sends requests meant for the real API host to the fake.
func (s *Server) Client() *http.Client { return fakeapi.Client(s.srv, "www.duckdns.org") }

// Get returns a copy of a sub-name's values.
func (s *Server) Get(sub string) Domain {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.domains[sub]; d != nil {
		return *d
	}
	return Domain{}
}

// Requests returns the query of every request so far.
func (s *Server) Requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, q)
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	ko := func() { fmt.Fprint(w, "KO") }
	if r.URL.Path != "/update" || q.Get("token") != s.token || q.Get("domains") == "" {
		ko()
		return
	}
	var targets []*Domain
	for _, n := range strings.Split(q.Get("domains"), ",") {
		d := s.domains[strings.TrimSuffix(strings.ToLower(n), ".duckdns.org")]
		if d == nil {
			ko()
			return
		}
		targets = append(targets, d)
	}
	clear := q.Get("clear") == "true"
	changed := false
	set := func(field *string, v string) {
		if *field != v {
			*field, changed = v, true
		}
	}
	for _, d := range targets {
		switch {
		case q.Has("txt"):
			if clear {
				set(&d.TXT, "")
			} else {
				set(&d.TXT, q.Get("txt"))
			}
		case clear:
			set(&d.IPv4, "")
			set(&d.IPv6, "")
		default:
			ip, ipv6 := q.Get("ip"), q.Get("ipv6")
			if ip == "" && ipv6 == "" { // detection: only the caller's IPv4
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is4() {
					ip = a.Unmap().String()
				}
			}
			for _, v := range []string{ip, ipv6} {
				if v == "" {
					continue
				}
				a, err := netip.ParseAddr(v)
				if err != nil {
					ko()
					return
				}
				if a.Unmap().Is4() {
					set(&d.IPv4, a.Unmap().String())
				} else {
					set(&d.IPv6, a.String())
				}
			}
		}
	}
	if q.Get("verbose") != "true" {
		fmt.Fprint(w, "OK")
		return
	}
	state := "NOCHANGE"
	if changed {
		state = "UPDATED"
	}
	d := targets[0]
	if q.Has("txt") {
		fmt.Fprintf(w, "OK\n%s\n%s", d.TXT, state)
		return
	}
	fmt.Fprintf(w, "OK\n%s\n%s\n%s", d.IPv4, d.IPv6, state)
}
