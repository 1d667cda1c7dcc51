package relay

import (
	"net/http"
	"regexp"
)

// Handler is the relay's HTTP surface: /derp and the endpoints Tailscale clients probe.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/derp/probe", probe)
	mux.HandleFunc("/derp/latency-check", probe)
	mux.Handle("/derp", r.derp)
	mux.HandleFunc("/generate_204", generate204)
	mux.HandleFunc("/robots.txt", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("User-agent: *\nDisallow: /\n"))
	})
	mux.HandleFunc("/", home)
	return mux
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

const homePage = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>DERP relay</title></head>
<body><h1>DERP relay</h1>
<p>This is a Tailscale DERP relay run by edgerelay.
It relays encrypted WireGuard packets between the devices of its owner's tailnet.</p>
</body></html>
`

func home(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	if req.URL.Path != "/" {
		http.NotFound(w, req)
		return
	}
	w.Write([]byte(homePage))
}
