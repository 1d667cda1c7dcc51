package verify

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/config"
)

func TestNoChecks(t *testing.T) {
	v, err := New(config.VerifyClients{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Configured() || len(v.Checks()) != 0 {
		t.Fatalf("Configured %v, checks %v", v.Configured(), v.Checks())
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

func TestAllowList(t *testing.T) {
	listed, other := key.NewNode().Public(), key.NewNode().Public()
	upper := "nodekey:" + strings.ToUpper(strings.TrimPrefix(other.String(), "nodekey:"))
	v, err := New(config.VerifyClients{Allow: []string{listed.String(), upper}}, testLogger(t))
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

	_, err = New(config.VerifyClients{Allow: []string{listed.String(), "nodekey:abc"}}, nil)
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
	v, err := New(config.VerifyClients{
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
	v, err := New(config.VerifyClients{TailscaledSocket: "/nonexistent/tailscaled.sock", URL: hs.URL}, testLogger(t))
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

func TestOpenWarning(t *testing.T) {
	none, _ := New(config.VerifyClients{}, nil)
	some, _ := New(config.VerifyClients{Allow: []string{NodeKeyString(randomKey(t))}}, nil)
	cases := []struct {
		listen string
		v      *Verifier
		warn   bool
	}{
		{":12345", none, true},
		{"0.0.0.0:12345", none, true},
		{"[::]:12345", none, true},
		{"192.168.1.1:12345", none, true},
		{"router.lan:12345", none, true},
		{"garbage", none, true},
		{"127.0.0.1:12345", none, false},
		{"127.0.0.53:12345", none, false},
		{"[::1]:12345", none, false},
		{"[::ffff:127.0.0.1]:12345", none, false},
		{"localhost:12345", none, false},
		{":12345", some, false},
		{":12345", nil, true},
	}
	for _, c := range cases {
		w := OpenWarning(c.listen, c.v)
		if (w != "") != c.warn {
			t.Errorf("OpenWarning(%q, configured=%v) = %q", c.listen, c.v != nil && c.v.Configured(), w)
		}
	}
	w := WarnIfOpen(":12345", none, testLogger(t))
	if !strings.Contains(w, "relay.verify_clients") || !strings.Contains(w, `":12345"`) {
		t.Errorf("warning %q", w)
	}
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
