package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

const checkURL = "url"

// admitBodyLimit is how much of an admission answer is read, as derper.
const admitBodyLimit = 4 << 10

// admissionURL posts {"NodePublic", "Source"} to an admission controller (headscale's
// /verify, tailcfg.DERPAdmitClientRequest) and honours {"Allow": bool}. Answers are cached
// per key and source so reconnect storms cost one request, and concurrent checks for the
// same client share one request.
type admissionURL struct {
	url      string // as configured, posted to
	endpoint string // for messages: without userinfo and query, which may hold secrets
	failOpen bool
	client   *http.Client
	timeout  time.Duration
	cache    *answerCache
	stats    *counters

	mu     sync.Mutex
	flight map[cacheKey]*call
}

type call struct {
	done chan struct{}
	vd   verdict
}

func newAdmissionURL(raw string, failOpen bool, o options, stats *counters) (*admissionURL, error) {
	u, err := url.Parse(raw) // Config.Validate made sure it is an http(s) URL
	if err != nil {
		return nil, fmt.Errorf("verify: relay.verify_clients.url: %w", err)
	}
	rt := o.urlTransport
	if rt == nil {
		rt = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &admissionURL{
		url:      raw,
		endpoint: u.Scheme + "://" + u.Host + u.EscapedPath(),
		failOpen: failOpen,
		client: &http.Client{
			Transport: rt,
			Timeout:   o.timeout,
			// A redirect would turn the POST into a GET; show it instead of following it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: o.timeout,
		cache:   newAnswerCache(o.cacheSize, o.positiveTTL, o.negativeTTL, o.now),
		stats:   stats,
		flight:  map[cacheKey]*call{},
	}, nil
}

func (a *admissionURL) name() string { return checkURL }

func (a *admissionURL) ask(ctx context.Context, key string, src netip.Addr) verdict {
	ck := cacheKey{key: key, src: src}
	if allow, ok := a.cache.get(ck); ok {
		if allow {
			a.stats.cacheHits.Add(1)
			return verdict{yes: true, detail: "cached"}
		}
		a.stats.negHits.Add(1)
		return verdict{reason: fmt.Errorf("%w (%s, cached)", ErrDenied, a.endpoint)}
	}
	a.mu.Lock()
	c, waiting := a.flight[ck]
	if !waiting {
		c = &call{done: make(chan struct{})}
		a.flight[ck] = c
	}
	a.mu.Unlock()
	if waiting {
		a.stats.coalesced.Add(1)
		select {
		case <-c.done:
			return c.vd
		case <-ctx.Done():
			return verdict{failed: true, reason: fmt.Errorf("waiting for %s: %w", a.endpoint, ctx.Err())}
		}
	}
	// The request outlives this caller's cancellation (others may wait on it); the timeout
	// still bounds it.
	c.vd = a.post(context.WithoutCancel(ctx), key, src)
	if !c.vd.failed {
		a.cache.put(ck, c.vd.yes)
	}
	a.mu.Lock()
	delete(a.flight, ck)
	a.mu.Unlock()
	close(c.done)
	return c.vd
}

// post asks the admission URL once. Only transport errors and timeouts are subject to
// fail_open; a non-200 status or a malformed answer refuses.
func (a *admissionURL) post(ctx context.Context, key string, src netip.Addr) verdict {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	a.stats.urlRequests.Add(1)
	allow, err := a.request(ctx, key, src)
	switch {
	case err == nil && allow:
		return verdict{yes: true}
	case err == nil:
		return verdict{reason: fmt.Errorf("%w (%s)", ErrDenied, a.endpoint)}
	case errors.Is(err, ErrUnreachable):
		return verdict{failed: true, yes: a.failOpen, reason: err}
	default:
		return verdict{failed: true, reason: err}
	}
}

func (a *admissionURL) request(ctx context.Context, key string, src netip.Addr) (bool, error) {
	body, err := json.Marshal(admitRequest{NodePublic: key, Source: sourceString(src)})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("admission URL %s: %w", a.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := a.client.Do(req)
	if err != nil {
		return false, a.unreachable(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("admission URL %s answered %s", a.endpoint, res.Status)
		if loc := res.Header.Get("Location"); loc != "" {
			msg += " (redirects are not followed; configure the final URL)"
		}
		if b := snippet(res.Body); b != "" {
			msg += fmt.Sprintf(": %q", b)
		}
		return false, errors.New(msg)
	}
	allow, err := parseAdmitResponse(io.LimitReader(res.Body, admitBodyLimit))
	if err != nil {
		if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
			return false, a.unreachable(err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, fmt.Errorf("admission URL %s: %w (empty, or cut short: only the first %d bytes are read)", a.endpoint, err, admitBodyLimit)
		}
		return false, fmt.Errorf("admission URL %s: %w", a.endpoint, err)
	}
	return allow, nil
}

// unreachable wraps a transport error without the URL (its query may hold a secret).
func (a *admissionURL) unreachable(err error) error {
	if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s did not answer within %v", ErrUnreachable, a.endpoint, a.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnreachable, a.endpoint, err)
}

// preflight posts a key no node has: a working controller answers 200 with a JSON Allow.
func (a *admissionURL) preflight(ctx context.Context) error {
	var probe [32]byte
	probe[0] = 1
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	_, err := a.request(ctx, NodeKeyString(probe), netip.Addr{})
	return err
}

// admitRequest is tailcfg.DERPAdmitClientRequest on the wire.
type admitRequest struct {
	NodePublic string // nodekey:<hex>
	Source     string // client IP, "" when unknown
}

// parseAdmitResponse reads tailcfg.DERPAdmitClientResponse as derper does: the first JSON
// value, field names matched case-insensitively; anything but a JSON object with a
// boolean (or absent) Allow is an error.
func parseAdmitResponse(r io.Reader) (bool, error) {
	var res struct{ Allow bool }
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return false, fmt.Errorf("answer is not {\"Allow\": bool}: %w", err)
	}
	return res.Allow, nil
}

func (a *admissionURL) closeIdle() { a.client.CloseIdleConnections() }
