package relay

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/relay/verify"
)

// TestHandlerRoutesAsServeMux: the relay's switch answers every request as the http.ServeMux
// it replaced did (same handlers, registered as before): status, Location, Allow,
// Content-Type and body, for exact, non-canonical, escaped and unknown paths and each method.
func TestHandlerRoutesAsServeMux(t *testing.T) {
	for _, liveMap := range []bool{true, false} {
		off := ""
		r, err := New(Options{Config: Config{Listen: "127.0.0.1:0", STUNListen: &off, Home: "default",
			TLS: TLS{Mode: "self-signed"}, VerifyClients: verify.Config{Open: true}}, StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		r.liveMap = liveMap
		b := []byte(`{"Regions":{}}`)
		r.liveJSON.Store(&b)

		mux := http.NewServeMux()
		mux.HandleFunc("/derp/probe", probe)
		mux.HandleFunc("/derp/latency-check", probe)
		mux.Handle("/derp", r.derp)
		mux.HandleFunc("/generate_204", generate204)
		mux.HandleFunc("/robots.txt", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("User-agent: *\nDisallow: /\n"))
		})
		if liveMap {
			mux.HandleFunc("GET "+LiveMapPath, r.serveLiveMap)
		}
		mux.Handle("/", homeHandler(homeMode(r.cfg.Home, r.cfg.Listen)))

		h := r.Handler()
		paths := []string{"/", "/nope", "/derp", "/derp/", "/derp/probe", "/derp/latency-check",
			"/derp/probe/", "/generate_204", "/robots.txt", LiveMapPath, LiveMapPath + "?x=1",
			"/derp/./probe", "/a/../generate_204?c=1", "//derp", "/derp%2Fprobe", "/gener%61te_204",
			"/x/../../robots.txt", "/%2e%2e/derp", "/derpmap.json/", "/index.html"}
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "OPTIONS", "CONNECT"} {
			for _, p := range paths {
				want, got := httptest.NewRecorder(), httptest.NewRecorder()
				mux.ServeHTTP(want, httptest.NewRequest(method, p, nil))
				h.ServeHTTP(got, httptest.NewRequest(method, p, nil))
				for _, k := range []string{"Location", "Allow", "Content-Type", "Access-Control-Allow-Origin", "Connection"} {
					if want.Header().Get(k) != got.Header().Get(k) {
						t.Errorf("live_map %v %s %s: %s %q, the mux gave %q", liveMap, method, p, k, got.Header().Get(k), want.Header().Get(k))
					}
				}
				if want.Code != got.Code || want.Body.String() != got.Body.String() {
					t.Errorf("live_map %v %s %s: %d %q, the mux gave %d %q", liveMap, method, p,
						got.Code, strings.TrimSpace(got.Body.String()), want.Code, strings.TrimSpace(want.Body.String()))
				}
			}
		}
	}
}
