package provider

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
)

// cloudflareProvider wraps libdns/cloudflare so that an authorization failure says which
// token permission is missing: the library only reports "HTTP 403" and the raw error list.
type cloudflareProvider struct {
	p *cloudflare.Provider
}

func newCloudflare(token string, hc *http.Client) *cloudflareProvider {
	return &cloudflareProvider{p: &cloudflare.Provider{APIToken: token, HTTPClient: recordingClient{hc}}}
}

// failure is one API request that came back with an error status.
type failure struct {
	method, path string
	status       int
}

type recorder struct {
	mu       sync.Mutex
	failures []failure
}

// recordingClient notes failed requests in the recorder carried by the request's context.
type recordingClient struct{ c *http.Client }

func (rc recordingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := rc.c.Do(req)
	if err == nil && resp.StatusCode >= 400 {
		if r, ok := req.Context().Value(ctxKey{}).(*recorder); ok {
			r.mu.Lock()
			r.failures = append(r.failures, failure{req.Method, req.URL.Path, resp.StatusCode})
			r.mu.Unlock()
		}
	}
	return resp, err
}

func (c *cloudflareProvider) call(ctx context.Context, zone, op string, f func(context.Context) error) error {
	rec := &recorder{}
	err := f(context.WithValue(ctx, ctxKey{}, rec))
	if err == nil {
		return nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, fl := range rec.failures {
		if fl.status == http.StatusForbidden || fl.status == http.StatusUnauthorized {
			return fmt.Errorf("cloudflare %s in zone %s: HTTP %d on %s %s: the API token lacks the %s permission for this zone: %w",
				op, strings.TrimSuffix(zone, "."), fl.status, fl.method, fl.path, permissionFor(fl.method, fl.path), err)
		}
	}
	if strings.Contains(err.Error(), "expected 1 zone, got 0") {
		return fmt.Errorf("cloudflare %s: zone %s not found: check the zone name and that the API token has the %s permission for it: %w",
			op, strings.TrimSuffix(zone, "."), permissionFor(http.MethodGet, "/zones"), err)
	}
	return fmt.Errorf("cloudflare %s in zone %s: %w", op, strings.TrimSuffix(zone, "."), err)
}

// permissionFor names the Cloudflare token permission a request needs.
func permissionFor(method, path string) string {
	switch {
	case !strings.Contains(path, "/dns_records"):
		return `"Zone / Zone / Read"`
	case method == http.MethodGet:
		return `"Zone / DNS / Read"`
	}
	return `"Zone / DNS / Edit"`
}

// Cloudflare's API takes the zone name without the trailing dot in its zone lookup.
func cfZone(zone string) string { return strings.TrimSuffix(zone, ".") }

func (c *cloudflareProvider) GetRecords(ctx context.Context, zone string) (recs []libdns.Record, err error) {
	err = c.call(ctx, zone, "listing records", func(ctx context.Context) error {
		recs, err = c.p.GetRecords(ctx, cfZone(zone))
		return err
	})
	return recs, err
}

func (c *cloudflareProvider) SetRecords(ctx context.Context, zone string, in []libdns.Record) (recs []libdns.Record, err error) {
	err = c.call(ctx, zone, "setting records", func(ctx context.Context) error {
		recs, err = c.p.SetRecords(ctx, cfZone(zone), in)
		return err
	})
	return recs, err
}

func (c *cloudflareProvider) AppendRecords(ctx context.Context, zone string, in []libdns.Record) (recs []libdns.Record, err error) {
	err = c.call(ctx, zone, "adding records", func(ctx context.Context) error {
		recs, err = c.p.AppendRecords(ctx, cfZone(zone), in)
		return err
	})
	return recs, err
}

func (c *cloudflareProvider) DeleteRecords(ctx context.Context, zone string, in []libdns.Record) (recs []libdns.Record, err error) {
	err = c.call(ctx, zone, "deleting records", func(ctx context.Context) error {
		recs, err = c.p.DeleteRecords(ctx, cfZone(zone), in)
		return err
	})
	return recs, err
}
