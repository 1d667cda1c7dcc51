package web

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

const testPassword = "correct horse battery"

func newTestServer(t *testing.T, o Options) *Server {
	t.Helper()
	o.StateDir = t.TempDir()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Status = func(context.Context) any { return nil }
	o.Counters = func() Counters { return Counters{} }
	o.Snippets = func(bool) map[string]string { return nil }
	if err := SetPassword(o.StateDir, testPassword); err != nil {
		t.Fatal(err)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// do sends one request from src (host:port) through the page's handler.
func do(s *Server, method, path, src string, body string, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = src
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w.Result()
}

func login(s *Server, src, pw string, hdr map[string]string) *http.Response {
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for k, v := range hdr {
		h[k] = v
	}
	return do(s, "POST", "/login", src, url.Values{"password": {pw}}.Encode(), h)
}

func sessionOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == cookieName && c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie (status %s)", resp.Status)
	return nil
}

func TestPasswordStoredHashed(t *testing.T) {
	dir := t.TempDir()
	if err := SetPassword(dir, "short"); err == nil {
		t.Error("a 5-character password was accepted")
	}
	if err := SetPassword(dir, testPassword); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(PasswordFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("pbkdf2-sha256$25000$")) || bytes.Contains(b, []byte(testPassword)) {
		t.Errorf("web.passwd is not a PBKDF2 hash: %q", b)
	}
	if fi, _ := os.Stat(PasswordFile(dir)); fi.Mode().Perm() != 0o600 {
		t.Errorf("web.passwd mode %v, want 0600", fi.Mode().Perm())
	}
	a := newAuth(dir)
	if ok, err := a.verify(testPassword); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, _ := a.verify(testPassword + "x"); ok {
		t.Error("wrong password accepted")
	}
}

func TestPasswordGeneratedOnceAndLogged(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	o := Options{StateDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	_, pw, ok := strings.Cut(logs.String(), "password=")
	if !ok {
		t.Fatalf("no generated password in the log: %s", logs.String())
	}
	pw, _, _ = strings.Cut(pw, " ")
	if ok, err := newAuth(dir).verify(pw); !ok || err != nil {
		t.Fatalf("the logged password %q does not log in: %v", pw, err)
	}
	logs.Reset()
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "password=") {
		t.Errorf("a second start logged a password again: %s", logs.String())
	}
}

func TestNothingWithoutLogin(t *testing.T) {
	s := newTestServer(t, Options{Settings: &recordSettings{}})
	const src = "192.168.1.20:5000"
	if r := do(s, "GET", "/healthz", src, "", nil); r.StatusCode != 200 {
		t.Errorf("/healthz: %s", r.Status)
	}
	for _, p := range []string{"/", "/app.js"} {
		r := do(s, "GET", p, src, "", nil)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without login: %s to %q, want 303 to /login", p, r.Status, r.Header.Get("Location"))
		}
	}
	for _, rq := range [][2]string{{"GET", "/api/status"}, {"GET", "/api/settings"}, {"POST", "/api/settings"}, {"POST", "/api/derpmap/copied"}, {"POST", "/logout"}} {
		if r := do(s, rq[0], rq[1], src, `{"log_level":"debug"}`, nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without login: %s, want 401", rq[0], rq[1], r.Status)
		}
	}
	// A made-up session cookie is no session.
	if r := do(s, "GET", "/api/status", src, "", nil, &http.Cookie{Name: cookieName, Value: "guess"}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("made-up cookie: %s", r.Status)
	}
}

func TestLoginCookieFlags(t *testing.T) {
	s := newTestServer(t, Options{})
	const src = "10.0.0.2:1234"
	r := login(s, src, "wrong password", nil)
	if r.StatusCode != http.StatusUnauthorized || len(r.Cookies()) != 0 {
		t.Errorf("wrong password: %s, cookies %v", r.Status, r.Cookies())
	}
	r = login(s, src, testPassword, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", r.Status)
	}
	c := sessionOf(t, r)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie over plain HTTP: %s (want HttpOnly, SameSite=Strict, Path=/, not Secure)", r.Header.Get("Set-Cookie"))
	}
	if r := do(s, "GET", "/api/status", src, "", nil, c); r.StatusCode != 200 {
		t.Errorf("status with the session: %s", r.Status)
	}
	r = login(s, src, testPassword, map[string]string{"X-Forwarded-Proto": "https"})
	if c := sessionOf(t, r); !c.Secure {
		t.Errorf("cookie behind TLS: %s (want Secure)", r.Header.Get("Set-Cookie"))
	}
}

func TestLoginRateLimitPerSource(t *testing.T) {
	s := newTestServer(t, Options{})
	const src = "192.168.1.50:40000"
	for i := range loginBurst {
		if r := login(s, src, "guess", nil); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s, want 401", i+1, r.Status)
		}
	}
	r := login(s, src, testPassword, nil)
	if r.StatusCode != http.StatusTooManyRequests || len(r.Cookies()) != 0 {
		t.Errorf("attempt over the limit, right password: %s, want 429 and no session", r.Status)
	}
	// Another address is not held up by the first one's guesses.
	if r := login(s, "192.168.1.51:40000", testPassword, nil); r.StatusCode != http.StatusSeeOther {
		t.Errorf("other address: %s", r.Status)
	}
}

// recordSettings is a Settings that records what reached it.
type recordSettings struct{ applied []map[string]string }

func (r *recordSettings) Current() (any, error) { return map[string]string{"format": "yaml"}, nil }
func (r *recordSettings) Apply(ch map[string]string) ([]string, error) {
	r.applied = append(r.applied, ch)
	return nil, nil
}

func TestChangesNeedTheCSRFToken(t *testing.T) {
	rec := &recordSettings{}
	s := newTestServer(t, Options{Settings: rec})
	const src = "[fd00::5]:1234"
	c := sessionOf(t, login(s, src, testPassword, nil))
	body := `{"log_level":"debug"}`
	for _, tok := range []string{"", "forged"} {
		if r := do(s, "POST", "/api/settings", src, body, map[string]string{"X-CSRF-Token": tok}, c); r.StatusCode != http.StatusForbidden {
			t.Errorf("token %q: %s, want 403", tok, r.Status)
		}
	}
	// Another session's token is no good either.
	c2 := sessionOf(t, login(s, src, testPassword, nil))
	sess2, _ := s.auth.session(withCookie(c2), time.Now())
	if r := do(s, "POST", "/api/settings", src, body, map[string]string{"X-CSRF-Token": sess2.csrf}, c); r.StatusCode != http.StatusForbidden {
		t.Errorf("another session's token: %s, want 403", r.Status)
	}
	if len(rec.applied) != 0 {
		t.Fatalf("a change without the right token reached the settings: %v", rec.applied)
	}
	sess, _ := s.auth.session(withCookie(c), time.Now())
	if r := do(s, "POST", "/api/settings", src, body, map[string]string{"X-CSRF-Token": sess.csrf}, c); r.StatusCode != 200 {
		t.Errorf("with the token: %s", r.Status)
	}
	if len(rec.applied) != 1 || rec.applied[0]["log_level"] != "debug" {
		t.Errorf("applied %v", rec.applied)
	}
}

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	return r
}

func TestOnlyTheLANSide(t *testing.T) {
	s := newTestServer(t, Options{})
	for src, want := range map[string]int{
		"203.0.113.9:1000":       http.StatusForbidden,
		"[2001:db8::1]:1000":     http.StatusForbidden,
		"192.168.0.2:1000":       200,
		"[fe80::1]:1000":         200,
		"100.101.102.103:1000":   200, // tailnet
		"[::ffff:10.1.2.3]:1000": 200,
		"127.0.0.1:1000":         200,
	} {
		if r := do(s, "GET", "/healthz", src, "", nil); r.StatusCode != want {
			t.Errorf("from %s: %s, want %d", src, r.Status, want)
		}
	}
	s.o.Config.AllowPublic = true
	if r := do(s, "GET", "/healthz", "203.0.113.9:1000", "", nil); r.StatusCode != 200 {
		t.Errorf("allow_public: %s", r.Status)
	}
}

// The iteration count is read from the file (a later version may raise it), and a file in
// any other format is refused with an error naming it.
func TestPasswordFileFormat(t *testing.T) {
	dir := t.TempDir()
	key := hashPassword(testPassword, "c2FsdA", 1000)
	os.WriteFile(PasswordFile(dir), []byte("pbkdf2-sha256$1000$c2FsdA$"+key+"\n"), 0o600)
	a := newAuth(dir)
	if ok, err := a.verify(testPassword); !ok || err != nil {
		t.Errorf("1,000 iterations from the file: %v %v", ok, err)
	}
	if ok, _ := a.verify("correct horse battery!"); ok {
		t.Error("wrong password accepted")
	}
	for _, bad := range []string{"$2a$10$abcdefghijklmnopqrstuv", "pbkdf2-sha256$0$c2FsdA$" + key, "pbkdf2-sha256$x$c2FsdA$" + key, ""} {
		os.WriteFile(PasswordFile(dir), []byte(bad), 0o600)
		if ok, err := a.verify(testPassword); ok || err == nil || !strings.Contains(err.Error(), "web.passwd") {
			t.Errorf("%q: %v %v, want an error naming the file", bad, ok, err)
		}
	}
}

// pbkdf2SHA256 is the standard library's PBKDF2 with SHA-256.
func TestPBKDF2LikeTheStandardLibrary(t *testing.T) {
	for _, iter := range []int{1, 2, 3, 1000, passwordIter} {
		want, err := pbkdf2.Key(sha256.New, testPassword, []byte("salt"), iter, 32)
		if err != nil {
			t.Fatal(err)
		}
		if got := pbkdf2SHA256([]byte(testPassword), []byte("salt"), iter); !bytes.Equal(got, want) {
			t.Errorf("%d iterations: %x, want %x", iter, got, want)
		}
	}
}
