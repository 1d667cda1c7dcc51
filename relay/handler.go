package relay

import (
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/edgerelay/edgerelay/relay/verify"
)

// LiveMapPath is where the relay serves its own region as a DERP map (relay.live_map).
const LiveMapPath = "/derpmap.json"

// Handler is the relay's HTTP surface: /derp, the endpoints Tailscale clients probe, the
// live DERP map, and the home page. Nothing on it names the product or its version.
//
// It routes with a switch, not an http.ServeMux: registering patterns links the mux's
// pattern parser and conflict checks (about 30 KB of the mipsle binary). It answers as the
// mux did with these routes: exact paths, the live map on GET and HEAD only, a
// non-canonical path redirected to its cleaned form, everything else to the home handler.
func (r *Relay) Handler() http.Handler {
	home := homeHandler(homeMode(r.cfg.Home, r.cfg.Listen))
	robots := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("User-agent: *\nDisallow: /\n"))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.RequestURI == "*" {
			if req.ProtoAtLeast(1, 1) {
				w.Header().Set("Connection", "close")
			}
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		escaped := req.URL.EscapedPath()
		if req.Method != http.MethodConnect {
			if clean := cleanPath(escaped); clean != escaped {
				u := &url.URL{Path: clean, RawQuery: req.URL.RawQuery}
				http.Redirect(w, req, u.String(), http.StatusTemporaryRedirect)
				return
			}
		}
		route := req.URL.Path
		if strings.Contains(strings.ToLower(escaped), "%2f") {
			route = "" // an escaped slash belongs to a segment: none of the paths below
		}
		switch route {
		case "/derp/probe", "/derp/latency-check":
			probe(w, req)
		case "/derp":
			r.derp.ServeHTTP(w, req)
		case "/generate_204":
			generate204(w, req)
		case "/robots.txt":
			robots(w, req)
		case LiveMapPath:
			if r.liveMap && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
				r.serveLiveMap(w, req)
				return
			}
			home.ServeHTTP(w, req)
		default:
			home.ServeHTTP(w, req)
		}
	})
}

// cleanPath is http.ServeMux's: p rooted and path.Clean'ed, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// homeMode resolves relay.home: unset is blank, except on a loopback-only listener where
// the short default page helps someone trying the relay.
func homeMode(home, listen string) string {
	if home == "" {
		if verify.LoopbackOnly(listen) {
			return "default"
		}
		return "blank"
	}
	return home
}

// serveLiveMap answers with the region the agent last set (SetRegion), as a DERP map.
func (r *Relay) serveLiveMap(w http.ResponseWriter, _ *http.Request) {
	b := r.liveJSON.Load()
	if b == nil {
		http.Error(w, "no DERP map yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	// No keep-alive: the map is fetched every few minutes, and a connection kept to the
	// address the line just lost would make the next fetch hang instead of resolving anew.
	w.Header().Set("Connection", "close")
	w.Write(*b)
}

// probe answers netcheck's HTTPS latency check and browser clients' probe.
func probe(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		w.Header().Set("Access-Control-Allow-Origin", "*")
	default:
		http.Error(w, "bogus probe method", http.StatusMethodNotAllowed)
	}
}

var challengeRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// generate204 is the captive-portal check: echo a well-formed challenge, answer 204.
func generate204(w http.ResponseWriter, req *http.Request) {
	if c := req.Header.Get("X-Tailscale-Challenge"); challengeRE.MatchString(c) {
		w.Header().Set("X-Tailscale-Response", "response "+c)
	}
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate, no-transform, max-age=0")
	w.WriteHeader(http.StatusNoContent)
}

// defaultHomePage names neither the product nor its version: scanners should not learn
// what runs here.
const defaultHomePage = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>DERP relay</title></head>
<body><h1>DERP relay</h1>
<p>This is a Tailscale DERP relay.
It relays encrypted WireGuard packets between the devices of its owner's tailnet.</p>
</body></html>
`

// homeHandler serves GET / as derper's --home does: blank (an empty page), default (the
// page above) or a redirect to a URL.
func homeHandler(mode string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		switch mode {
		case "blank":
			h.Set("Content-Type", "text/html; charset=utf-8")
		case "default":
			h.Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(defaultHomePage))
		default:
			http.Redirect(w, req, mode, http.StatusFound)
		}
	})
}
