package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// The login: one password, kept as a bcrypt hash in state_dir/web.passwd. bcrypt rather
// than argon2id because argon2id is only strong when it gets tens of MB per hash, which a
// router with 12 MB for the whole daemon cannot spare; bcrypt needs 4 KB and its cost
// (10: about 0.1 s here, seconds on a slow MIPS) is what a guesser pays per try, on top of
// the per-address rate limit. One check runs at a time, so a flood of logins cannot take
// the box's CPU from the relay.

const (
	cookieName     = "edgerelay_session"
	sessionTTL     = 12 * time.Hour
	maxSessions    = 32
	loginBurst     = 5                // attempts an address may make at once
	loginRefill    = 12 * time.Second // then one more per this (5 a minute)
	maxLoginSource = 1024             // addresses the limiter remembers
)

// PasswordFile is where the hashed login password is kept.
func PasswordFile(stateDir string) string { return filepath.Join(stateDir, "web.passwd") }

// SetPassword stores pw (hashed) as the page's login password. The running daemon uses it
// from the next login on.
func SetPassword(stateDir, pw string) error {
	if len(pw) < 8 {
		return errors.New("the password must have at least 8 characters")
	}
	if len(pw) > 72 {
		return errors.New("the password must have at most 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	return atomicfile.Write(PasswordFile(stateDir), append(h, '\n'), 0o600)
}

// ensurePassword generates and stores a password when none is set, returning it ("" when
// one was set already).
func ensurePassword(stateDir string) (string, error) {
	if _, err := os.Stat(PasswordFile(stateDir)); !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	pw := randomToken(12)
	if err := SetPassword(stateDir, pw); err != nil {
		return "", err
	}
	return pw, nil
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session is one logged-in browser.
type session struct {
	csrf    string // sent back in X-CSRF-Token with every change
	expires time.Time
}

// bucket is one source address's login attempts (a token bucket).
type bucket struct {
	tokens float64
	at     time.Time
}

type auth struct {
	stateDir string
	check    chan struct{} // one bcrypt comparison at a time

	mu       sync.Mutex
	sessions map[string]session
	tries    map[netip.Addr]*bucket
}

func newAuth(stateDir string) *auth {
	return &auth{stateDir: stateDir, check: make(chan struct{}, 1),
		sessions: map[string]session{}, tries: map[netip.Addr]*bucket{}}
}

// allow takes one login attempt from src's bucket; false when it is empty (or the
// limiter is full of addresses that all tried recently).
func (a *auth) allow(src netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.tries[src]
	if b == nil {
		if len(a.tries) >= maxLoginSource {
			for k, o := range a.tries {
				if o.refilled(now) >= loginBurst {
					delete(a.tries, k)
				}
			}
			if len(a.tries) >= maxLoginSource {
				return false
			}
		}
		b = &bucket{tokens: loginBurst, at: now}
		a.tries[src] = b
	}
	b.tokens, b.at = b.refilled(now), now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refilled(now time.Time) float64 {
	return min(loginBurst, b.tokens+float64(now.Sub(b.at))/float64(loginRefill))
}

// verify compares pw with the stored hash.
func (a *auth) verify(pw string) (bool, error) {
	h, err := os.ReadFile(PasswordFile(a.stateDir))
	if err != nil {
		return false, fmt.Errorf("reading the password: %w", err)
	}
	a.check <- struct{}{}
	defer func() { <-a.check }()
	err = bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(string(h))), []byte(pw))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	return err == nil, err
}

// newSession starts a session and returns its cookie token.
func (a *auth) newSession(now time.Time) (string, session) {
	tok := randomToken(32)
	s := session{csrf: randomToken(32), expires: now.Add(sessionTTL)}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, o := range a.sessions {
		if now.After(o.expires) {
			delete(a.sessions, k)
		}
	}
	if len(a.sessions) >= maxSessions { // drop the one closest to expiry
		var oldest string
		for k, o := range a.sessions {
			if oldest == "" || o.expires.Before(a.sessions[oldest].expires) {
				oldest = k
			}
		}
		delete(a.sessions, oldest)
	}
	a.sessions[tok] = s
	return tok, s
}

// session returns the request's live session.
func (a *auth) session(r *http.Request, now time.Time) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[c.Value]
	if !ok || now.After(s.expires) {
		delete(a.sessions, c.Value)
		return session{}, false
	}
	return s, true
}

func (a *auth) endSession(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
}

// csrfOK reports whether a change request carries its session's token.
func csrfOK(r *http.Request, s session) bool {
	t := r.Header.Get("X-CSRF-Token")
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.csrf)) == 1
}

// sessionCookie is the session's cookie: HttpOnly (no script reads it), SameSite=Strict
// (no other site's page sends it), Secure when the page is reached over TLS (directly or
// through a proxy that says so).
func sessionCookie(r *http.Request, tok string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: tok, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"}
}
