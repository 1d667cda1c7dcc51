package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Handler serves the page: /healthz for anyone on the LAN side, /login, and everything
// else only to a logged-in browser, with every change carrying its session's CSRF token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { s.loginPage(w, "", http.StatusOK) })
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /app.css", asset(appCSS, "text/css; charset=utf-8")) // the login page's style too
	mux.Handle("GET /{$}", s.page(asset(indexHTML, "text/html; charset=utf-8")))
	mux.Handle("GET /app.js", s.page(asset(appJS, "text/javascript; charset=utf-8")))
	mux.Handle("GET /api/status", s.api(s.status))
	mux.Handle("GET /api/settings", s.api(s.settings))
	mux.Handle("POST /api/settings", s.change(s.applySettings))
	mux.Handle("POST /api/derpmap/copied", s.change(s.copied))
	mux.Handle("POST /logout", s.change(func(w http.ResponseWriter, r *http.Request, _ session) {
		s.auth.endSession(r)
		http.SetCookie(w, sessionCookie(r, "", -1))
		w.WriteHeader(http.StatusNoContent)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.o.Config.AllowPublic && !lanSide(r.RemoteAddr) {
			http.Error(w, "the web page answers only the LAN side (web.allow_public)", http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

func asset(body, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ctype)
		io.WriteString(w, body)
	}
}

// page lets a logged-in browser through and sends any other to the login page.
func (s *Server) page(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.auth.session(r, time.Now()); !ok {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// api answers a logged-in browser's read with h's value as JSON.
func (s *Server) api(h func(*http.Request, session) (any, int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.auth.session(r, time.Now())
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "log in first"})
			return
		}
		v, code := h(r, sess)
		writeJSON(w, code, v)
	})
}

// change is api for a request that changes something: it also needs the CSRF token.
func (s *Server) change(h func(http.ResponseWriter, *http.Request, session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.auth.session(r, time.Now())
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "log in first"})
			return
		}
		if !csrfOK(r, sess) {
			s.log.Warn("web: change refused: missing or wrong CSRF token", "path", r.URL.Path, "from", r.RemoteAddr)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing or wrong CSRF token"})
			return
		}
		h(w, r, sess)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) loginPage(w http.ResponseWriter, msg string, code int) {
	page := strings.Replace(loginHTML, "<!--msg-->", msg, 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, page)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	src, _ := netip.ParseAddrPort(r.RemoteAddr)
	if !s.auth.allow(src.Addr().Unmap(), time.Now()) {
		s.log.Warn("web: login attempts over the limit", "from", src.Addr().String())
		w.Header().Set("Retry-After", "60")
		s.loginPage(w, `<p class="err" id="msg">Too many attempts; wait a minute.</p>`, http.StatusTooManyRequests)
		return
	}
	// The form by hand: r.PostFormValue would link mime/multipart (20 KB) for nothing.
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	form, _ := url.ParseQuery(string(body))
	ok, err := s.auth.verify(form.Get("password"))
	if err != nil {
		s.log.Error("web: login", "err", err)
	}
	if !ok {
		s.log.Warn("web: wrong password", "from", src.Addr().String())
		s.loginPage(w, `<p class="err" id="msg">Wrong password.</p>`, http.StatusUnauthorized)
		return
	}
	tok, _ := s.auth.newSession(time.Now())
	http.SetCookie(w, sessionCookie(r, tok, int(sessionTTL/time.Second)))
	s.log.Info("web: logged in", "from", src.Addr().String())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// dashboard is what /api/status returns: the daemon's status and the page's own views.
type dashboard struct {
	Status   any               `json:"status"`
	Traffic  []Sample          `json:"traffic"`
	Logs     []string          `json:"logs"`
	Snippets map[string]string `json:"snippets,omitempty"`
	CSRF     string            `json:"csrf"`
}

func (s *Server) status(r *http.Request, sess session) (any, int) {
	d := dashboard{Traffic: s.traffic.samples(), Logs: s.o.Logs.Lines(), CSRF: sess.csrf}
	if s.o.Status != nil {
		d.Status = s.o.Status(r.Context())
	}
	if s.o.Snippets != nil {
		d.Snippets = s.o.Snippets(false)
	}
	return d, http.StatusOK
}

func (s *Server) copied(w http.ResponseWriter, _ *http.Request, _ session) {
	var m map[string]string
	if s.o.Snippets != nil {
		m = s.o.Snippets(true)
	}
	if m == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the relay has no DERP map (off, or not listening yet)"})
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) settings(*http.Request, session) (any, int) {
	if s.o.Settings == nil {
		return SettingsView{}, http.StatusOK
	}
	v, err := s.o.Settings.Current()
	if err != nil {
		return map[string]string{"error": err.Error()}, http.StatusInternalServerError
	}
	return v, http.StatusOK
}

// settingsResult is the answer to a settings change.
type settingsResult struct {
	Saved    bool     `json:"saved"`
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func (s *Server) applySettings(w http.ResponseWriter, r *http.Request, _ session) {
	if s.o.Settings == nil {
		writeJSON(w, http.StatusConflict, settingsResult{Error: "this daemon runs the built-in default config: there is no file to write"})
		return
	}
	var req struct {
		Changes map[string]string `json:"changes"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, settingsResult{Error: "request: " + err.Error()})
		return
	}
	probs, err := s.o.Settings.Apply(req.Changes)
	switch {
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, settingsResult{Error: err.Error()})
	case len(probs) > 0:
		writeJSON(w, http.StatusUnprocessableEntity, settingsResult{Problems: probs})
	default:
		s.log.Info("web: settings saved; reloading", "keys", len(req.Changes), "from", r.RemoteAddr)
		writeJSON(w, http.StatusOK, settingsResult{Saved: true})
	}
}
