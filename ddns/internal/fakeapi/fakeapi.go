// Package fakeapi routes a DNS provider's HTTPS API calls to a local test server: the
// providers keep their real base URLs, and the fakes (cloudflarefake, duckdnsfake,
// dynv6fake) stand behind this client.
package fakeapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"
)

// Client returns an HTTP client that sends requests for https://host to srv and refuses any
// other destination, so a test can never reach the real service.
func Client(srv *httptest.Server, host string) *http.Client {
	u, _ := url.Parse(srv.URL)
	return &http.Client{Transport: rewrite{real: host, fake: u, rt: srv.Client().Transport}, Timeout: 10 * time.Second}
}

// rewrite sends requests for https://real to fake (plain or TLS test server). The Host
// header stays the real one, as the real API sees it (DNSPod signs it).
type rewrite struct {
	real string
	fake *url.URL
	rt   http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != r.real || req.URL.Scheme != "https" {
		return nil, fmt.Errorf("fakeapi: request to %s://%s, not to the API of %s", req.URL.Scheme, req.URL.Host, r.real)
	}
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.fake.Scheme, r.fake.Host
	return r.rt.RoundTrip(req)
}
