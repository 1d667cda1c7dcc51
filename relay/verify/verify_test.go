package verify

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestLoopbackWithoutChecks: trying the relay on one's own machine needs nothing.
func TestLoopbackWithoutChecks(t *testing.T) {
	v, err := New(Config{}, nil, WithListener("127.0.0.1:12345"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Mode() != ModeOpen || v.Configured() || len(v.Checks()) != 0 || v.Warning() != "" {
		t.Fatalf("mode %v, configured %v, checks %v, warning %q", v.Mode(), v.Configured(), v.Checks(), v.Warning())
	}
	for range 3 {
		if err := v.Check(context.Background(), randomKey(t), src1); err != nil {
			t.Fatal(err)
		}
	}
	if st := v.Stats(); st.Admitted != 3 || st.Unverified != 3 || st.Refused != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := v.Preflight(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestOpenIsExplicit: open admits everyone on a reachable listener, and says so.
func TestOpenIsExplicit(t *testing.T) {
	v, err := New(Config{Open: true}, nil, WithListener(":12345"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(context.Background(), randomKey(t), src1); err != nil {
		t.Fatal(err)
	}
	if w := v.Warning(); !strings.Contains(w, "relay.verify_clients.open") || !strings.Contains(w, "anyone") {
		t.Errorf("warning %q", w)
	}
	if _, err := New(Config{Open: true, Allow: []string{NodeKeyString(randomKey(t))}}, nil); err == nil {
		t.Error("open together with a check was accepted")
	}
}

// TestClosedByDefault: with no check on a reachable listener, the local tailscaled is looked
// for at each socket path on every client; while none answers every client is refused with
// that reason. A tailscaled that starts later is picked up, one that stops refuses again,
// and one that comes back at another of the paths is found there.
func TestClosedByDefault(t *testing.T) {
	dir, err := os.MkdirTemp("", "erv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	first, second := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	for _, listen := range []string{":12345", "[::]:12345", "192.0.2.1:12345", "router.lan:12345", ""} {
		v, err := New(Config{}, nil, WithListener(listen))
		if err != nil || v.Mode() != ModeAuto {
			t.Fatalf("listen %q: mode %v, %v", listen, v.Mode(), err)
		}
	}
	v, err := New(Config{}, testLogger(t), WithListener(":12345"), WithTailscaledSockets(first, second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	member, stranger := randomKey(t), randomKey(t)
	refusedNoTailscaled := func(k [32]byte) {
		t.Helper()
		err := v.Check(ctx, k, src1)
		if !errors.Is(err, ErrNoTailscaled) || !strings.Contains(err.Error(), first+", "+second) {
			t.Fatalf("want a refusal naming both paths, got %v", err)
		}
		if w := v.Warning(); !strings.Contains(w, "refusing every client") || !strings.Contains(w, "relay.verify_clients.allow") {
			t.Fatalf("warning %q", w)
		}
	}
	refusedNoTailscaled(member)
	t.Logf("refusal: %v; warning: %s", v.Check(ctx, member, src1), v.Warning())

	l := serveLocalAPI(t, second, "")
	l.add(member, "laptop")
	if err := v.Check(ctx, member, src1); err != nil {
		t.Fatalf("member refused once tailscaled runs: %v", err)
	}
	if err := v.Check(ctx, stranger, src1); !errors.Is(err, ErrNotInNetmap) {
		t.Fatalf("stranger: %v", err)
	}
	if d := v.Describe(); !strings.Contains(d, second) || v.Warning() != "" {
		t.Errorf("describe %q, warning %q", d, v.Warning())
	}

	l.stop()
	refusedNoTailscaled(member)

	l = serveLocalAPI(t, first, "")
	l.add(member, "laptop")
	if err := v.Check(ctx, member, src1); err != nil {
		t.Fatalf("member refused after tailscaled came back: %v", err)
	}
	if st := v.Stats(); st.Tailscaled.Admitted != 2 || st.Unverified != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestRunProbesTailscaled: Run finds a tailscaled that starts later without a client
// asking, so status says it before the first client comes.
func TestRunProbesTailscaled(t *testing.T) {
	dir, err := os.MkdirTemp("", "erv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "tailscaled.sock")
	v, err := New(Config{}, testLogger(t), WithListener(":12345"), WithTailscaledSockets(sock))
	if err != nil {
		t.Fatal(err)
	}
	v.probeEvery = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	serveLocalAPI(t, sock, "")
	testenv.WaitFor(t, 10*time.Second, "Run finds tailscaled", func() bool { return v.Warning() == "" })
	if !strings.Contains(v.Describe(), sock) {
		t.Errorf("describe %q", v.Describe())
	}
}

func TestAllowList(t *testing.T) {
	listed, other := key.NewNode().Public(), key.NewNode().Public()
	upper := "nodekey:" + strings.ToUpper(strings.TrimPrefix(other.String(), "nodekey:"))
	v, err := New(Config{Allow: []string{listed.String(), upper}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Configured() || strings.Join(v.Checks(), ",") != "allow" {
		t.Fatalf("checks %v", v.Checks())
	}
	ctx := context.Background()
	for _, k := range []key.NodePublic{listed, other} {
		if err := v.Check(ctx, raw(k), src1); err != nil {
			t.Errorf("%v refused: %v", k.ShortString(), err)
		}
	}
	err = v.Check(ctx, randomKey(t), src1)
	if !errors.Is(err, ErrNotListed) {
		t.Fatalf("unlisted key: %v", err)
	}
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Reasons) != 1 {
		t.Fatalf("want a RefusedError with one reason, got %#v", err)
	}
	if st := v.Stats(); st.Allow != (CheckStats{Admitted: 2, Refused: 1}) || st.Admitted != 2 || st.Refused != 1 {
		t.Errorf("stats %+v", st)
	}

	_, err = New(Config{Allow: []string{listed.String(), "nodekey:abc"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "allow[1]") {
		t.Errorf("bad allow entry: %v", err)
	}
}

// TestOneYesAdmits: checks run cheapest first, the first yes admits and the rest are not
// asked; a refusal lists every check's reason.
func TestOneYesAdmits(t *testing.T) {
	hs := newAdmissionServer(t)
	l := newLocalAPI(t, "")
	listed, inNetmap, approved := randomKey(t), randomKey(t), randomKey(t)
	l.add(inNetmap, "nas")
	hs.register(approved, true)
	v, err := New(Config{
		Allow:            []string{NodeKeyString(listed)},
		TailscaledSocket: l.socket,
		URL:              hs.URL,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Checks(), ","); got != "allow,tailscaled,url" {
		t.Fatalf("order %s", got)
	}
	ctx := context.Background()
	for _, k := range [][32]byte{listed, inNetmap, approved} {
		if err := v.Check(ctx, k, src1); err != nil {
			t.Fatalf("refused: %v", err)
		}
	}
	st := v.Stats()
	if st.Allow != (CheckStats{Admitted: 1, Refused: 2}) ||
		st.Tailscaled != (CheckStats{Admitted: 1, Refused: 1}) ||
		st.URL != (CheckStats{Admitted: 1}) || st.URLRequests != 1 {
		t.Errorf("later checks asked after a yes: %+v", st)
	}

	err = v.Check(ctx, randomKey(t), src1)
	for _, want := range []error{ErrNotListed, ErrNotInNetmap, ErrDenied} {
		if !errors.Is(err, want) {
			t.Errorf("refusal %v does not carry %v", err, want)
		}
	}
	t.Logf("refusal: %v", err)
	if strings.Contains(err.Error(), "\n") {
		t.Error("refusal spans lines; the log wants one line")
	}
}

// TestBrokenCheckDoesNotBlockOthers: a missing tailscaled refuses nobody on its own when the
// admission URL says yes.
func TestBrokenCheckDoesNotBlockOthers(t *testing.T) {
	hs := newAdmissionServer(t)
	k := randomKey(t)
	hs.register(k, true)
	v, err := New(Config{TailscaledSocket: "/nonexistent/tailscaled.sock", URL: hs.URL}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(context.Background(), k, src1); err != nil {
		t.Fatal(err)
	}
	st := v.Stats()
	if st.Tailscaled.Errors != 1 || st.URL.Admitted != 1 || !strings.Contains(st.LastError, "/nonexistent/tailscaled.sock") {
		t.Errorf("stats %+v", st)
	}
	if err := v.Preflight(context.Background()); !errors.Is(err, ErrNoTailscaled) || !strings.HasPrefix(err.Error(), "tailscaled: ") {
		t.Errorf("preflight: %v", err)
	}
	v.Close()
	if err := v.Check(context.Background(), k, src1); err != nil {
		t.Errorf("after Close (idle connections only): %v", err)
	}
}

func TestNodeKeyString(t *testing.T) {
	for range 5 {
		k := key.NewNode().Public()
		if got := NodeKeyString(raw(k)); got != k.String() {
			t.Fatalf("NodeKeyString %s, Tailscale's text form %s", got, k.String())
		}
		back, err := ParseNodeKey(k.String())
		if err != nil || back != raw(k) {
			t.Fatalf("ParseNodeKey(%s) = %x, %v", k, back, err)
		}
	}
	for _, bad := range []string{"", "nodekey:", "nodekey:zz" + strings.Repeat("0", 62), strings.Repeat("0", 64), "nodekey:" + strings.Repeat("0", 66)} {
		if _, err := ParseNodeKey(bad); err == nil {
			t.Errorf("ParseNodeKey(%q) accepted", bad)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for listen, want := range map[string]bool{
		":12345": false, "0.0.0.0:12345": false, "[::]:12345": false, "192.168.1.1:12345": false,
		"router.lan:12345": false, "garbage": false, "": false,
		"127.0.0.1:12345": true, "127.0.0.53:12345": true, "[::1]:12345": true,
		"[::ffff:127.0.0.1]:12345": true, "localhost:12345": true,
	} {
		if got := LoopbackOnly(listen); got != want {
			t.Errorf("LoopbackOnly(%q) = %v", listen, got)
		}
	}
}

func TestAdvice(t *testing.T) {
	line := func(k, v string) string { return k + ": " + v }
	if a := Advice(context.Background(), ":12345", false, true, line); a != nil {
		t.Errorf("configured: %q", a)
	}
	if a := Advice(context.Background(), "127.0.0.1:12345", false, false, line); a != nil {
		t.Errorf("loopback: %q", a)
	}
	a := Advice(context.Background(), ":12345", true, false, line)
	if len(a) != 1 || !strings.Contains(a[0], "relay.verify_clients.open: true") || !strings.Contains(a[0], "anyone") {
		t.Errorf("open: %q", a)
	}
	if FindTailscaled(context.Background()) != "" {
		t.Skip("a tailscaled runs on this machine")
	}
	a = Advice(context.Background(), ":12345", false, false, line)
	if len(a) != 1 || !strings.Contains(a[0], "refuse every client") || !strings.Contains(a[0], "relay.verify_clients.url: https://") ||
		!strings.Contains(a[0], "relay.verify_clients.allow: nodekey:") || !strings.Contains(a[0], DefaultTailscaledSockets[0]) {
		t.Errorf("closed: %q", a)
	}
	t.Log(a[0])
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{period: time.Minute}
	t0 := time.Now()
	if _, ok := l.allow(t0); !ok {
		t.Fatal("first line held back")
	}
	for i := range 5 {
		if _, ok := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatal("line within the period let through")
		}
	}
	n, ok := l.allow(t0.Add(time.Minute))
	if !ok || n != 5 {
		t.Fatalf("after the period: ok %v, suppressed %d (want 5)", ok, n)
	}
}

func TestRefusedSourceUnmapped(t *testing.T) {
	hs := newAdmissionServer(t)
	v := newURLVerifier(t, hs.URL, false)
	v.Check(context.Background(), randomKey(t), netip.MustParseAddr("fe80::1%eth0"))
	if got := hs.lastSource(); got != "fe80::1" {
		t.Errorf("Source %q, want the address without zone", got)
	}
}
