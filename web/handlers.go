package web

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// ServeHTTP serves the page: /healthz for anyone on the LAN side, /login, and everything
// else only to a logged-in browser: the pages send any other to the login page, the API
// answers it 401, and a change (POST) also needs the session's CSRF token.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.o.Config.AllowPublic && !lanSide(r.RemoteAddr) {
		http.Error(w, "the web page answers only the LAN side (web.allow_public)", http.StatusForbidden)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	route := r.Method + " " + r.URL.Path
	switch route {
	case "GET /healthz":
		io.WriteString(w, "ok\n")
		return
	case "GET /login":
		s.loginPage(w, "", http.StatusOK)
		return
	case "POST /login":
		s.login(w, r)
		return
	case "GET /app.css": // the login page's too
		asset(w, r, appCSS, "text/css")
		return
	}
	sess, ok := s.auth.session(r, time.Now())
	switch {
	case !ok && r.Method == "GET" && !strings.HasPrefix(r.URL.Path, "/api/"):
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	case !ok:
		fail(w, http.StatusUnauthorized, "log in first")
	case r.Method == "POST" && !csrfOK(r, sess):
		s.log.Warn("web: change refused: missing or wrong CSRF token", "path", r.URL.Path, "from", r.RemoteAddr)
		fail(w, http.StatusForbidden, "missing or wrong CSRF token")
	case route == "GET /":
		asset(w, r, indexHTML, "text/html")
	case route == "GET /app.js":
		asset(w, r, appJS, "text/javascript")
	case route == "GET /api/status":
		writeJSON(w, http.StatusOK, dashboard{Status: s.o.Status(r.Context()), Traffic: s.traffic.get(),
			Logs: s.o.Logs.Lines(), Snippets: s.o.Snippets(false), CSRF: sess.csrf})
	case route == "GET /api/settings" && s.o.Settings == nil:
		writeJSON(w, http.StatusOK, result{}) // the built-in default: no form
	case route == "GET /api/settings":
		if v, err := s.o.Settings.Current(); err != nil {
			fail(w, http.StatusInternalServerError, err.Error())
		} else {
			writeJSON(w, http.StatusOK, v)
		}
	case route == "POST /api/settings":
		s.applySettings(w, r)
	case route == "POST /api/derpmap/copied":
		// The map the copy button puts on the clipboard, recorded as handed out as
		// `edgerelay derpmap` does.
		if m := s.o.Snippets(true); m != nil {
			writeJSON(w, http.StatusOK, m)
		} else {
			fail(w, http.StatusServiceUnavailable, "the relay has no DERP map (off, or not listening yet)")
		}
	case route == "POST /logout":
		s.auth.endSession(r)
		http.SetCookie(w, sessionCookie(r, "", -1))
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// asset sends a gzip-compressed file, unpacked for a client that does not take gzip.
func asset(w http.ResponseWriter, r *http.Request, gz, ctype string) {
	h := w.Header()
	h.Set("Content-Type", ctype+"; charset=utf-8")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		io.WriteString(w, gz)
	} else if zr, err := gzip.NewReader(strings.NewReader(gz)); err == nil {
		io.Copy(w, zr)
	}
}

// result is the answer to a change, or an error.
type result struct {
	Saved    bool     `json:"saved,omitempty"`
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// fail answers a request with msg as its JSON error.
func fail(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, result{Error: msg}) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) loginPage(w http.ResponseWriter, msg string, code int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, strings.Replace(loginHTML, "<!--msg-->", msg, 1))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	src, _ := netip.ParseAddrPort(r.RemoteAddr)
	from := src.Addr().Unmap()
	if !s.auth.allow(from, time.Now()) {
		s.log.Warn("web: login attempts over the limit", "from", from)
		w.Header().Set("Retry-After", "60")
		s.loginPage(w, `<p class="err" id="msg">Too many attempts; wait a minute.</p>`, http.StatusTooManyRequests)
		return
	}
	// The form by hand: r.PostFormValue would link mime/multipart for nothing.
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	form, _ := url.ParseQuery(string(body))
	ok, err := s.auth.verify(form.Get("password"))
	if err != nil {
		s.log.Error("web: login", "err", err)
	}
	if !ok {
		s.log.Warn("web: wrong password", "from", from)
		s.loginPage(w, `<p class="err" id="msg">Wrong password.</p>`, http.StatusUnauthorized)
		return
	}
	tok, _ := s.auth.newSession(time.Now())
	http.SetCookie(w, sessionCookie(r, tok, int(sessionTTL/time.Second)))
	s.log.Info("web: logged in", "from", from)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// dashboard is what /api/status returns: the daemon's status and the page's own views.
type dashboard struct {
	Status   any               `json:"status"`
	Traffic  [][4]int64        `json:"traffic"`
	Logs     []string          `json:"logs"`
	Snippets map[string]string `json:"snippets,omitempty"`
	CSRF     string            `json:"csrf"`
}

func (s *Server) applySettings(w http.ResponseWriter, r *http.Request) {
	if s.o.Settings == nil {
		fail(w, http.StatusConflict, "this daemon runs the built-in default config: there is no file to write")
		return
	}
	var changes map[string]string // key: new value
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&changes); err != nil {
		fail(w, http.StatusBadRequest, "request: "+err.Error())
		return
	}
	probs, err := s.o.Settings.Apply(changes)
	switch {
	case err != nil:
		fail(w, http.StatusInternalServerError, err.Error())
	case len(probs) > 0:
		writeJSON(w, http.StatusUnprocessableEntity, result{Problems: probs})
	default:
		s.log.Info("web: settings saved; reloading", "keys", len(changes), "from", r.RemoteAddr)
		writeJSON(w, http.StatusOK, result{Saved: true})
	}
}
