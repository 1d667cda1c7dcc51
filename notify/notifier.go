package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// WebhookStatus is one webhook's counters for `edgerelay status`.
type WebhookStatus struct {
	URL       string `json:"url"` // redacted: scheme://host/…
	Sent      int    `json:"sent"`
	Failed    int    `json:"failed"`  // events given up after every retry
	Dropped   int    `json:"dropped"` // events dropped from a full queue, oldest first
	Queued    int    `json:"queued"`
	LastError string `json:"last_error,omitempty"`
}

// timing tunes delivery.
type timing struct {
	retryMin time.Duration // wait after the first failed attempt, doubling...
	retryMax time.Duration // ...up to this
	attempts int           // tries per event before it counts as failed
}

// Delivery: a failed event is retried after 2 s, 4 s, … (at most 2 min apart), 6 tries in
// all (about a minute); 32 events wait per webhook at most.
var defaultTiming = timing{retryMin: 2 * time.Second, retryMax: 2 * time.Minute, attempts: 6}

const queueMax = 32

// Notifier sends events to the configured webhooks. Build it with New, call Run, and hand
// it events with Notify.
type Notifier struct {
	host   string
	log    *slog.Logger
	timing timing
	hooks  []*hook
}

// hook is one webhook: its settings, queue and counters.
type hook struct {
	cfg   Webhook
	body  *template
	ctype string // Content-Type, unless a header sets one
	hc    *http.Client
	kick  chan struct{} // an event was queued
	max   int           // events waiting at most

	mu    sync.Mutex // guards queue and st
	queue []Event    // waiting: the one being sent is out of it
	st    WebhookStatus
}

// New builds a Notifier from the notify section, after checking it (errors name the keys
// under notify).
func New(cfg Config, log *slog.Logger) (*Notifier, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		var ps field.Problems
		ps.Merge("notify", err)
		return nil, ps
	}
	n := &Notifier{log: log.With("component", "notify"), timing: defaultTiming}
	n.host, _ = os.Hostname()
	for _, w := range cfg.Webhooks {
		h := &hook{cfg: w, hc: &http.Client{Timeout: w.Timeout},
			kick: make(chan struct{}, 1), max: queueMax, st: WebhookStatus{URL: Redact(w.URL)}}
		h.body, _ = parseTemplate(w.Body) // checked by Validate
		h.ctype = "application/json"
		if h.body != nil && !h.body.json {
			h.ctype = "application/x-www-form-urlencoded"
		}
		n.hooks = append(n.hooks, h)
	}
	return n, nil
}

// Notify queues ev for every webhook that wants its kind and returns at once: it never
// waits on a webhook. When a queue is full its oldest event is dropped.
func (n *Notifier) Notify(ev *Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Host = n.host
	ev.describe()
	for _, h := range n.hooks {
		if len(h.cfg.Events) > 0 && index(h.cfg.Events, ev.Event) < 0 {
			continue
		}
		h.mu.Lock()
		if len(h.queue) >= h.max {
			h.queue = h.queue[1:]
			h.st.Dropped++
			n.log.Warn("webhook queue full, dropped the oldest event", "url", h.st.URL)
		}
		h.queue = append(h.queue, *ev)
		h.mu.Unlock()
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
}

// Status returns every webhook's counters. It never waits on a webhook: the lock it takes
// is never held over a request.
func (n *Notifier) Status() []WebhookStatus {
	out := make([]WebhookStatus, len(n.hooks))
	for i, h := range n.hooks {
		h.mu.Lock()
		out[i] = h.st
		out[i].Queued = len(h.queue)
		h.mu.Unlock()
	}
	return out
}

// Run sends queued events until ctx ends, one goroutine per webhook, so a slow webhook
// delays only its own events. Events still queued when ctx ends are not sent.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, h := range n.hooks {
		wg.Go(func() { n.deliver(ctx, h) })
	}
	wg.Wait()
	return nil
}

// deliver sends h's events in order, each tried up to timing.attempts times with backoff.
func (n *Notifier) deliver(ctx context.Context, h *hook) {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-h.kick:
				continue
			}
		}
		ev := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()
		var body []byte
		if h.body != nil {
			vals := ev.values()
			body = []byte(h.body.render(&vals))
		} else {
			body, _ = json.Marshal(&ev) // an Event always marshals
		}
		// Tries until the webhook accepts, the attempts are used up, or ctx ends.
		wait := n.timing.retryMin
		for attempt := 1; ; attempt++ {
			err := h.send(ctx, body)
			if ctx.Err() != nil {
				return
			}
			h.mu.Lock()
			if err == nil {
				h.st.Sent++
			} else {
				h.st.LastError = err.Error()
				if attempt >= n.timing.attempts {
					h.st.Failed++
				}
			}
			h.mu.Unlock()
			if err == nil {
				break
			}
			if attempt >= n.timing.attempts {
				n.log.Warn("webhook failed, event given up", "url", h.st.URL, "event", ev.Event, "err", err)
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, n.timing.retryMax)
		}
	}
}

// send makes one POST of body; any 2xx answer is success.
func (h *hook) send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request (check the URL)")
	}
	req.Header.Set("Content-Type", h.ctype)
	req.Header.Set("User-Agent", "edgerelay")
	for _, line := range h.cfg.Headers {
		k, v, _ := strings.Cut(line, ":") // checked by Validate
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		// url.Error repeats the whole URL, token included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status + ": " + strings.TrimSpace(string(msg)))
	}
	return nil
}

// Redact shows a webhook URL without what may be secret: scheme://host/… (a Telegram bot
// token, a Bark or ServerChan key, a WeCom robot key sit in the path or the query).
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(an unparsable URL)"
	}
	s := u.Scheme + "://" + u.Host
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
