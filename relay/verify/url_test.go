package verify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// admissionServer is an admission controller that behaves like headscale's /verify: POST
// only (405 otherwise), request body limited to 4 KiB, invalid JSON is 400, and the answer is
// {"Allow": true} exactly when the node key is registered. It decodes requests with
// Tailscale's own tailcfg.DERPAdmitClientRequest, so the wire format is checked too.
type admissionServer struct {
	*httptest.Server
	mu         sync.Mutex
	registered map[key.NodePublic]bool
	sources    []string // Source of each request, in order
	requests   atomic.Int64
	// override, when set, answers instead of the headscale logic (misbehaving controllers).
	override http.HandlerFunc
}

func newAdmissionServer(t testing.TB) *admissionServer {
	s := &admissionServer{registered: map[key.NodePublic]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *admissionServer) register(k [32]byte, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered[tsKey(k)] = on
}

func (s *admissionServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.override != nil {
		s.override(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "Wrong method", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		http.Error(w, "Bad Request: body too large", http.StatusBadRequest)
		return
	}
	var req tailcfg.DERPAdmitClientRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "Bad Request: invalid JSON", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	allow := s.registered[req.NodePublic]
	s.sources = append(s.sources, sourceString(req.Source))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
}

func (s *admissionServer) lastSource() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sources) == 0 {
		return "<none>"
	}
	return s.sources[len(s.sources)-1]
}

func newURLVerifier(t *testing.T, url string, failOpen bool, opts ...Option) *Verifier {
	t.Helper()
	v, err := New(Config{URL: url, FailOpen: failOpen}, testLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var src1 = netip.MustParseAddr("192.0.2.7")

func TestURLAdmitsRegisteredKeys(t *testing.T) {
	hs := newAdmissionServer(t)
	v := newURLVerifier(t, hs.URL+"/verify", false)
	member, stranger := randomKey(t), randomKey(t)
	hs.register(member, true)
	ctx := context.Background()

	if err := v.Check(ctx, member, src1); err != nil {
		t.Fatalf("registered key refused: %v", err)
	}
	if got := hs.lastSource(); got != "192.0.2.7" {
		t.Errorf("Source sent %q, want 192.0.2.7", got)
	}
	err := v.Check(ctx, stranger, netip.MustParseAddr("::ffff:198.51.100.9"))
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("stranger: got %v, want ErrDenied", err)
	}
	t.Logf("refusal: %v", err)
	if got := hs.lastSource(); got != "198.51.100.9" {
		t.Errorf("Source sent %q for a 4-in-6 address, want the plain IPv4", got)
	}
	if err := v.Check(ctx, randomKey(t), netip.Addr{}); !errors.Is(err, ErrDenied) {
		t.Fatalf("unknown source: got %v", err)
	}
	if got := hs.lastSource(); got != "" {
		t.Errorf("Source sent %q for an unknown address, want \"\"", got)
	}
	st := v.Stats()
	if st.Admitted != 1 || st.Refused != 2 || st.URL.Admitted != 1 || st.URL.Refused != 2 || st.URLRequests != 3 {
		t.Errorf("stats %+v", st)
	}
	if err := v.Preflight(ctx); err != nil {
		t.Errorf("preflight against a working controller: %v", err)
	}
}

// TestURLRequestBody checks the exact bytes posted: derper's DERPAdmitClientRequest JSON.
func TestURLRequestBody(t *testing.T) {
	var got []byte
	var ctype string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		ctype = r.Header.Get("Content-Type")
		io.WriteString(w, `{"Allow":true}`)
	}))
	defer srv.Close()
	v := newURLVerifier(t, srv.URL, false)
	k := randomKey(t)
	if err := v.Check(context.Background(), k, src1); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(tailcfg.DERPAdmitClientRequest{NodePublic: tsKey(k), Source: src1})
	if string(got) != string(want) {
		t.Errorf("posted %s\nderper posts %s", got, want)
	}
	if ctype != "application/json" {
		t.Errorf("Content-Type %q", ctype)
	}
}

func TestURLCache(t *testing.T) {
	hs := newAdmissionServer(t)
	clock := newFakeClock()
	v := newURLVerifier(t, hs.URL, false, WithClock(clock.Now))
	member, stranger := randomKey(t), randomKey(t)
	hs.register(member, true)
	ctx := context.Background()
	check := func(k [32]byte, src netip.Addr, wantOK bool) {
		t.Helper()
		if err := v.Check(ctx, k, src); (err == nil) != wantOK {
			t.Fatalf("check: %v, want admitted=%v", err, wantOK)
		}
	}

	for range 10 { // a reconnect storm
		check(member, src1, true)
	}
	if n := hs.requests.Load(); n != 1 {
		t.Fatalf("%d requests for 10 checks within the TTL, want 1", n)
	}
	check(member, netip.MustParseAddr("192.0.2.8"), true) // another source is another answer
	if n := hs.requests.Load(); n != 2 {
		t.Fatalf("another source: %d requests, want 2", n)
	}

	// The node is removed from the tailnet: the cached yes lasts until the TTL ends.
	hs.register(member, false)
	clock.Advance(DefaultPositiveTTL - time.Second)
	check(member, src1, true)
	clock.Advance(2 * time.Second)
	check(member, src1, false)

	// Refusals are cached for a few seconds only.
	before := hs.requests.Load()
	check(stranger, src1, false)
	check(stranger, src1, false)
	if n := hs.requests.Load() - before; n != 1 {
		t.Fatalf("two refusals within the negative TTL: %d requests, want 1", n)
	}
	hs.register(stranger, true) // approved: admitted once the short refusal expires
	clock.Advance(DefaultNegativeTTL)
	check(stranger, src1, true)

	st := v.Stats()
	t.Logf("stats: %+v", st)
	if st.CacheHits != 10 || st.NegativeCacheHits != 1 || st.URLRequests != hs.requests.Load() {
		t.Errorf("cache hits %d (want 10), negative hits %d (want 1), requests %d (server saw %d)",
			st.CacheHits, st.NegativeCacheHits, st.URLRequests, hs.requests.Load())
	}
}

func TestURLCacheBounded(t *testing.T) {
	hs := newAdmissionServer(t)
	v := newURLVerifier(t, hs.URL, false, WithCacheSize(3))
	for range 10 {
		k := randomKey(t)
		hs.register(k, true)
		if err := v.Check(context.Background(), k, src1); err != nil {
			t.Fatal(err)
		}
	}
	n := v.checks[0].(*admissionURL).cache.len()
	if n > 3 {
		t.Fatalf("cache holds %d answers, bound is 3", n)
	}
	t.Logf("cache holds %d answers after 10 clients (bound 3)", n)
}

// TestURLCoalesce: a storm of simultaneous connects for one client costs one request.
func TestURLCoalesce(t *testing.T) {
	hs := newAdmissionServer(t)
	release := make(chan struct{})
	hs.override = func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, `{"Allow":true}`)
	}
	v := newURLVerifier(t, hs.URL, false)
	k := randomKey(t)
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- v.Check(context.Background(), k, src1) }()
	}
	for v.Stats().Coalesced < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := hs.requests.Load(); got != 1 {
		t.Fatalf("%d simultaneous checks made %d requests, want 1", n, got)
	}
	if st := v.Stats(); st.Admitted != n || st.URL.Admitted != n {
		t.Errorf("stats %+v", st)
	}
}

// TestURLFailOpen: fail_open decides only when the controller cannot be asked.
func TestURLFailOpen(t *testing.T) {
	// A port nothing listens on: bind one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/verify?token=s3cret"
	ln.Close()
	ctx := context.Background()
	k := randomKey(t)

	closed := newURLVerifier(t, down, false)
	err = closed.Check(ctx, k, src1)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("fail_open off, controller down: got %v, want ErrUnreachable", err)
	}
	t.Logf("fail closed: %v", err)
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the URL's query: %v", err)
	}
	if st := closed.Stats(); st.URL.Errors != 1 || st.Refused != 1 || !strings.Contains(st.LastError, "unreachable") {
		t.Errorf("stats %+v", st)
	}
	if err := closed.Preflight(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("preflight: %v", err)
	}

	open := newURLVerifier(t, down, true)
	for range 3 {
		if err := open.Check(ctx, k, src1); err != nil {
			t.Fatalf("fail_open on, controller down: refused: %v", err)
		}
	}
	st := open.Stats()
	if st.FailOpen != 3 || st.URL.Errors != 3 || st.URLRequests != 3 || st.CacheHits != 0 {
		t.Errorf("fail-open admissions must not be cached: %+v", st)
	}
}

func TestURLTimeout(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); srv.Close() })
	for _, failOpen := range []bool{false, true} {
		v := newURLVerifier(t, srv.URL, failOpen, WithTimeout(300*time.Millisecond))
		start := time.Now()
		err := v.Check(context.Background(), randomKey(t), src1)
		t.Logf("fail_open=%v: %v after %v", failOpen, err, time.Since(start).Round(time.Millisecond))
		if failOpen && err != nil {
			t.Errorf("fail_open on, controller hangs: refused: %v", err)
		}
		if !failOpen && (!errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "did not answer within 300ms")) {
			t.Errorf("fail_open off, controller hangs: %v", err)
		}
	}
}

// TestURLBadAnswers: a controller that answers, but not with 200 {"Allow": true}, refuses
// the client even with fail_open.
func TestURLBadAnswers(t *testing.T) {
	cases := map[string]struct {
		h    http.HandlerFunc
		want string
	}{
		"500": {func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Internal error", http.StatusInternalServerError)
		}, `500 Internal Server Error: "Internal error"`},
		"405 (wrong method)": {func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Wrong method", http.StatusMethodNotAllowed)
		}, "405"},
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, "redirects are not followed"},
		"not JSON": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>login</html>")
		}, `not {"Allow": bool}`},
		"Allow as a string": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"Allow":"true"}`)
		}, `not {"Allow": bool}`},
		"answer beyond 4 KiB": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat(" ", 4096)+`{"Allow":true}`)
		}, `not {"Allow": bool}`},
		"200 with Allow false": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"Allow":false}`)
		}, `answered {"Allow":false}`},
		"200 without Allow": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{}`)
		}, `answered {"Allow":false}`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			v := newURLVerifier(t, srv.URL, true)
			err := v.Check(context.Background(), randomKey(t), src1)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a refusal containing %q", err, c.want)
			}
			if v.Stats().FailOpen != 0 {
				t.Fatal("fail_open admitted on an answer")
			}
			t.Logf("%v", err)
		})
	}
	t.Run("case-insensitive field, trailing data", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "{\"allow\":true}\ntrailing")
		}))
		defer srv.Close()
		v := newURLVerifier(t, srv.URL, false)
		if err := v.Check(context.Background(), randomKey(t), src1); err != nil {
			t.Fatalf("derper admits this answer; we refused: %v", err)
		}
	})
}

func TestURLConfigErrors(t *testing.T) {
	for _, u := range []string{"ftp://host/verify", "http://", "::bad"} {
		_, err := New(Config{URL: u}, nil)
		if err == nil || !strings.Contains(err.Error(), "relay.verify_clients.url") {
			t.Errorf("%q: %v", u, err)
		}
	}
	if _, err := New(Config{URL: "http://x"}, nil, WithTimeout(0)); err == nil {
		t.Error("zero timeout accepted")
	}
}
