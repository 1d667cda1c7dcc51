// Package fakeclient gives the DNS API fakes an HTTP client that reaches them in place of
// the real API host: the libdns providers' base URLs are constants.
package fakeclient

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"
)

// For returns a client sending every request to srv (scheme and host rewritten). The Host
// header stays the one the request was made for, as the real API would see it.
func For(srv *httptest.Server) *http.Client {
	u, _ := url.Parse(srv.URL)
	return &http.Client{Transport: rewrite{target: u, rt: srv.Client().Transport}, Timeout: 10 * time.Second}
}

type rewrite struct {
	target *url.URL
	rt     http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.target.Scheme, r.target.Host
	return r.rt.RoundTrip(req)
}
