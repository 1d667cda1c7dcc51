package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// The login: one password, kept in state_dir/web.passwd as PBKDF2-HMAC-SHA256 with a
// random salt ("pbkdf2-sha256$iterations$salt$key", base64). PBKDF2 because TLS already
// links SHA-256 and HMAC (bcrypt cost 21 KB on mipsle), and because argon2id and scrypt
// are only strong with tens of MB per hash, which a router with 12 MB for the whole daemon
// cannot spare. The iteration count is what a guesser pays per try: one iteration is two
// SHA-256 blocks, and Go's generic SHA-256 takes about 6 µs a block on a 880 MHz MIPS
// router (MT7621; ~4,000 instructions), so 25,000 iterations cost about 0.3 s a login
// there and a few ms on a NAS with SHA instructions; the per-address rate limit comes on
// top. The count is stored in the file, so a later version can raise it. One check runs
// at a time, so a flood of logins cannot take the box's CPU from the relay.
const (
	passwordIter = 25000
	passwordKind = "pbkdf2-sha256"
)

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
	salt := randomToken(16)
	key := hashPassword(pw, salt, passwordIter)
	line := passwordKind + "$" + strconv.Itoa(passwordIter) + "$" + salt + "$" + key + "\n"
	return atomicfile.Write(PasswordFile(stateDir), []byte(line), 0o600)
}

func hashPassword(pw, salt string, iter int) string {
	return base64.RawStdEncoding.EncodeToString(pbkdf2SHA256([]byte(pw), []byte(salt), iter))
}

// pbkdf2SHA256 is PBKDF2 with HMAC-SHA256 (RFC 8018, 5.2) for its one 32-byte block,
// written over crypto/hmac: crypto/pbkdf2's generic Key costs 1.9 KB of mipsle code for
// the hash.Hash shape, this a quarter of that. The test checks it against crypto/pbkdf2.
func pbkdf2SHA256(pw, salt []byte, iter int) []byte {
	prf := hmac.New(sha256.New, pw)
	prf.Write(salt)
	prf.Write([]byte{0, 0, 0, 1}) // block 1
	u := prf.Sum(nil)
	t := append([]byte(nil), u...)
	for range iter - 1 {
		prf.Reset()
		prf.Write(u)
		u = prf.Sum(u[:0])
		for i := range t {
			t[i] ^= u[i]
		}
	}
	return t
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
	expires int64  // Unix seconds
}

type auth struct {
	stateDir string
	check    chan struct{} // one password check at a time

	mu       sync.Mutex
	sessions map[string]session
	// tries holds, per source address, when its login bucket is full again (Unix
	// nanoseconds): each attempt adds loginRefill, and one that would push it past
	// loginBurst refills from now is refused (a token bucket kept as one number).
	tries map[netip.Addr]int64
}

func newAuth(stateDir string) *auth {
	return &auth{stateDir: stateDir, check: make(chan struct{}, 1),
		sessions: map[string]session{}, tries: map[netip.Addr]int64{}}
}

// allow takes one login attempt from src's bucket; false when it is empty (or the
// limiter is full of addresses that all tried recently).
func (a *auth) allow(src netip.Addr, now time.Time) bool {
	t := now.UnixNano()
	a.mu.Lock()
	if len(a.tries) >= maxLoginSource {
		for k, full := range a.tries {
			if full <= t {
				delete(a.tries, k)
			}
		}
	}
	full, known := a.tries[src]
	full = max(full, t) + int64(loginRefill)
	ok := full-t <= int64(loginBurst*loginRefill) && (known || len(a.tries) < maxLoginSource)
	if ok {
		a.tries[src] = full
	}
	a.mu.Unlock()
	return ok
}

// verify compares pw with the stored hash.
func (a *auth) verify(pw string) (bool, error) {
	b, err := os.ReadFile(PasswordFile(a.stateDir))
	if err != nil {
		return false, fmt.Errorf("reading the password: %w", err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "$")
	iter := 0
	if len(f) == 4 && f[0] == passwordKind {
		iter, _ = strconv.Atoi(f[1])
	}
	if iter < 1 || iter > 10*passwordIter {
		return false, fmt.Errorf("%s: not a %s hash (set one with `edgerelay web passwd`)", PasswordFile(a.stateDir), passwordKind)
	}
	a.check <- struct{}{}
	key := hashPassword(pw, f[2], iter)
	<-a.check
	return subtle.ConstantTimeCompare([]byte(key), []byte(f[3])) == 1, nil
}

// newSession starts a session and returns its cookie token, dropping expired sessions and,
// when there are maxSessions, the one closest to expiry.
func (a *auth) newSession(now time.Time) (string, session) {
	tok := randomToken(32)
	t := now.Unix()
	s := session{csrf: randomToken(32), expires: t + int64(sessionTTL/time.Second)}
	a.mu.Lock()
	oldest := ""
	for k, o := range a.sessions {
		if t > o.expires {
			delete(a.sessions, k)
		} else if oldest == "" || o.expires < a.sessions[oldest].expires {
			oldest = k
		}
	}
	if len(a.sessions) >= maxSessions {
		delete(a.sessions, oldest)
	}
	a.sessions[tok] = s
	a.mu.Unlock()
	return tok, s
}

// session returns the request's live session.
func (a *auth) session(r *http.Request, now time.Time) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	a.mu.Lock()
	s, ok := a.sessions[c.Value]
	if ok = ok && now.Unix() <= s.expires; !ok {
		delete(a.sessions, c.Value)
	}
	a.mu.Unlock()
	return s, ok
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
