package notify

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// receiver is a webhook on loopback that records what it gets; answer decides each reply.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	types  []string
	tokens []string // X-Token headers
	at     []time.Time
	answer func(n int) int // status for the n-th request (1-based)
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	r := &receiver{answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.types = append(r.types, req.Header.Get("Content-Type"))
		r.tokens = append(r.tokens, req.Header.Get("X-Token"))
		r.at = append(r.at, time.Now())
		n := len(r.bodies)
		r.mu.Unlock()
		code := http.StatusOK
		if r.answer != nil {
			code = r.answer(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// run starts n until the test ends.
func run(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := t.Context(), func() {}
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// mustNew builds a Notifier for cfg whose failed events are retried after retryMin (100 ms
// unless set), doubling, attempts times (5 unless set).
func mustNew(t *testing.T, cfg Config, tm timing) *Notifier {
	t.Helper()
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.host = "box"
	n.timing = timing{retryMin: cmp.Or(tm.retryMin, 100*time.Millisecond), retryMax: time.Minute, attempts: cmp.Or(tm.attempts, 5)}
	return n
}

func TestJSONPostCarriesTheEvent(t *testing.T) {
	r := newReceiver(t, nil)
	n := mustNew(t, Config{Webhooks: []Webhook{{URL: r.URL + "/hook", Events: []string{RecordUpdated}, Headers: []string{"x-token: abc"}}}}, timing{})
	run(t, n)
	n.Notify(&Event{Event: AddressChanged, Record: "x.example.test", Old: "2001:db8::1", New: "2001:db8::2"}) // not wanted
	n.Notify(&Event{Event: RecordUpdated, Record: "derp.example.test", Type: "AAAA", Old: "2001:db8::1", New: "2001:db8::2"})
	testenv.WaitFor(t, time.Minute, "the webhook to be called", func() bool { return len(r.got()) == 1 })
	var ev Event
	if err := json.Unmarshal([]byte(r.got()[0]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Event != RecordUpdated || ev.Record != "derp.example.test" || ev.Type != "AAAA" || ev.Old != "2001:db8::1" ||
		ev.New != "2001:db8::2" || ev.Host != "box" || ev.Time.IsZero() || !strings.Contains(ev.Message, "now points at 2001:db8::2") {
		t.Fatalf("got %+v", ev)
	}
	if r.types[0] != "application/json" || r.tokens[0] != "abc" {
		t.Fatalf("content type %q, X-Token %q", r.types[0], r.tokens[0])
	}
	testenv.WaitFor(t, time.Minute, "the status to count it", func() bool { return n.Status()[0].Sent == 1 })
}

// TestRetriesWithBackoff: a webhook answering 500 is retried, each wait at least double the
// previous, until it accepts; the error shows in the status meanwhile.
func TestRetriesWithBackoff(t *testing.T) {
	r := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n := mustNew(t, Config{Webhooks: []Webhook{{URL: r.URL}}}, timing{})
	run(t, n)
	n.Notify(&Event{Event: PartFailing, Part: "ddns", Error: "boom"})
	testenv.WaitFor(t, time.Minute, "the third attempt to be accepted", func() bool { return n.Status()[0].Sent == 1 })
	st := n.Status()[0]
	if len(r.got()) != 3 || st.Failed != 0 || !strings.Contains(st.LastError, "500") {
		t.Fatalf("requests %d, status %+v", len(r.got()), st)
	}
	// Waits never end early, so these lower bounds hold on any machine.
	if d1, d2 := r.at[1].Sub(r.at[0]), r.at[2].Sub(r.at[1]); d1 < 100*time.Millisecond || d2 < 200*time.Millisecond {
		t.Fatalf("retried after %v and %v, want ≥ 100ms and ≥ 200ms", d1, d2)
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	r := newReceiver(t, func(int) int { return http.StatusBadGateway })
	n := mustNew(t, Config{Webhooks: []Webhook{{URL: r.URL}}}, timing{retryMin: time.Millisecond, attempts: 3})
	run(t, n)
	n.Notify(&Event{Event: CertRenewed, Names: []string{"derp.example.test"}})
	n.Notify(&Event{Event: CertRenewed, Names: []string{"derp.example.test"}})
	testenv.WaitFor(t, time.Minute, "both events to be given up", func() bool { return n.Status()[0].Failed == 2 })
	if got := len(r.got()); got != 6 {
		t.Fatalf("%d requests, want 3 attempts for each of 2 events", got)
	}
}

// TestQueueOverflowDropsOldest: while the webhook hangs on one event, a full queue drops
// its oldest waiting event for each new one, counts them, and Notify never waits.
func TestQueueOverflowDropsOldest(t *testing.T) {
	release := make(chan struct{})
	r := newReceiver(t, func(n int) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	})
	defer close(release) // before the server's Close, which waits for the handler
	n := mustNew(t, Config{Webhooks: []Webhook{{URL: r.URL, Body: "{{part}}"}}}, timing{})
	n.hooks[0].max = 2
	run(t, n)
	n.Notify(&Event{Event: PartFailing, Part: "p1"})
	testenv.WaitFor(t, time.Minute, "the first event to reach the webhook", func() bool { return len(r.got()) == 1 })
	for _, p := range []string{"p2", "p3", "p4", "p5"} {
		n.Notify(&Event{Event: PartFailing, Part: p}) // returns at once though the webhook hangs
	}
	if st := n.Status()[0]; st.Dropped != 2 || st.Queued != 2 {
		t.Fatalf("status %+v, want 2 dropped, 2 queued", st)
	}
	release <- struct{}{}
	testenv.WaitFor(t, time.Minute, "the queued events", func() bool { return n.Status()[0].Sent == 3 })
	if got := strings.Join(r.got(), " "); got != "p1 p4 p5" {
		t.Fatalf("webhook got %q, want p1 p4 p5 (p2 and p3 dropped)", got)
	}
}

// TestSlowWebhookDelaysOnlyItself: one webhook hanging does not hold back another's events.
func TestSlowWebhookDelaysOnlyItself(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, func(int) int { <-release; return http.StatusOK })
	defer close(release)
	fast := newReceiver(t, nil)
	n := mustNew(t, Config{Webhooks: []Webhook{{URL: slow.URL}, {URL: fast.URL}}}, timing{})
	run(t, n)
	for range 3 {
		n.Notify(&Event{Event: AddressChanged, Record: "derp.example.test", New: "192.0.2.1"})
	}
	testenv.WaitFor(t, time.Minute, "the fast webhook to get every event", func() bool { return len(fast.got()) == 3 })
	if st := n.Status(); st[0].Sent != 0 || st[1].Sent != 3 {
		t.Fatalf("status %+v", st)
	}
}

// TestSecretsNotShown: a token in the URL appears neither in logs, status nor errors.
func TestSecretsNotShown(t *testing.T) {
	const token = "123456:AAEsecretTOKEN"
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close() // nothing listens there now: connection refused
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := New(Config{Webhooks: []Webhook{{URL: deadURL + "/bot" + token + "/sendMessage?chat_id=1"}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	n.timing = timing{retryMin: time.Millisecond, attempts: 2}
	run(t, n)
	n.Notify(&Event{Event: PartFailing, Part: "relay"})
	testenv.WaitFor(t, time.Minute, "the event to be given up", func() bool { return n.Status()[0].Failed == 1 })
	st := n.Status()[0]
	mu.Lock()
	all := logs.String() + st.URL + st.LastError
	mu.Unlock()
	if strings.Contains(all, token) || strings.Contains(all, "sendMessage") || !strings.Contains(st.URL, "/…") {
		t.Fatalf("the token shows:\n%s", all)
	}
	if !strings.Contains(st.LastError, "refused") {
		t.Fatalf("last error %q does not say what went wrong", st.LastError)
	}
	if _, err := New(Config{Webhooks: []Webhook{{URL: "ftp://x/bot" + token}}}, nil); err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("validation error %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.telegram.org/bot123:ABC/sendMessage":        "https://api.telegram.org/…",
		"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K": "https://qyapi.weixin.qq.com/…",
		"https://user:pw@example.test":                           "https://example.test/…",
		"http://192.0.2.1:8080/":                                 "http://192.0.2.1:8080",
		"::not a url":                                            "(an unparsable URL)",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
