// Package localapi talks to the local tailscaled over its LocalAPI unix socket: finding
// the socket, plain HTTP requests, masked prefs edits and following the IPN bus. It holds
// only the few JSON fields edgerelay reads (tailscale.com is never linked into the shipped
// binary). A leaf like agent/field: it imports nothing of edgerelay's, so every part may use
// it.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultSockets are where tailscaled puts its LocalAPI socket: OpenWrt and Debian
// (/var/run is usually /run), and Synology's Tailscale package, in the order they are tried.
var DefaultSockets = []string{
	"/var/run/tailscale/tailscaled.sock",
	"/run/tailscale/tailscaled.sock",
	"/var/packages/Tailscale/var/tailscaled.sock",
}

// requestTimeout bounds one request (a stuck tailscaled must not hold a part's apply).
const requestTimeout = 15 * time.Second

// maxBody bounds a LocalAPI answer: prefs and status without peers are a few KiB.
const maxBody = 4 << 20

// Client reaches tailscaled at one configured socket, or, found automatically (Auto), at
// the first of Sockets that answers, looked for on every connection: a tailscaled that
// starts after us, restarts or moves is picked up by itself.
type Client struct {
	Sockets []string               // the paths looked at, in order (read-only)
	Auto    bool                   // looked for at the usual paths (read-only)
	key     string                 // " (the config key naming the socket)", for messages
	found   atomic.Pointer[string] // the socket that answered last ("" or nil: none)
	hc      *http.Client
}

// New returns a client for socket, or one that finds it at DefaultSockets when socket is
// ""; key is the config key that sets socket, named when tailscaled cannot be reached.
func New(socket, key string) *Client {
	c := Find(DefaultSockets...)
	if socket != "" {
		c.Sockets, c.Auto = []string{socket}, false
	}
	if key != "" {
		c.key = " (" + key + ")"
	}
	return c
}

// Find returns a client that looks for tailscaled at each of sockets, in order.
func Find(sockets ...string) *Client {
	c := &Client{Sockets: sockets, Auto: true}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return c.Dial(ctx) },
		DisableKeepAlives: true, // requests are rare; no idle connection left on tailscaled
	}}
	return c
}

// Dial connects to the first socket that answers. The error is the first socket's when
// none answers.
func (c *Client) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	var first error
	for _, s := range c.Sockets {
		conn, err := d.DialContext(ctx, "unix", s)
		if err == nil {
			c.found.Store(&s)
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	empty := ""
	c.found.Store(&empty)
	return nil, first
}

// Socket is the socket that answered last ("" when none has).
func (c *Client) Socket() string {
	if f := c.found.Load(); f != nil {
		return *f
	}
	return ""
}

// Where names the socket for messages: the one in use, or every path looked at.
func (c *Client) Where() string {
	if s := c.Socket(); s != "" {
		return s
	}
	return strings.Join(c.Sockets, ", ")
}

// request sends one LocalAPI request; body, when not nil, goes as JSON.
func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	// tailscaled accepts only this Host (or none), and no Origin/Referer headers.
	req, err := http.NewRequestWithContext(ctx, method, "http://local-tailscaled.sock"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // without net/http's placeholder URL
		}
		return nil, fmt.Errorf("tailscaled LocalAPI at %s%s: %w", c.Where(), c.key, err)
	}
	return resp, nil
}

// Do sends one request and returns the answer's body, or an error with tailscaled's message
// for any status but 200. With out not nil, the body is JSON decoded into it.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	switch {
	case err != nil:
		err = fmt.Errorf("tailscaled LocalAPI %s %s: %w", method, path, err)
	case resp.StatusCode != http.StatusOK:
		err = statusError(method, path, resp.Status, b)
	case out != nil:
		if err = json.Unmarshal(b, out); err != nil {
			err = fmt.Errorf("tailscaled LocalAPI %s %s: bad JSON: %w", method, path, err)
		}
	}
	return b, err
}

// statusError is a LocalAPI answer other than 200, with tailscaled's message.
func statusError(method, path, status string, body []byte) error {
	return fmt.Errorf("tailscaled LocalAPI %s %s: %s: %s", method, path, status, ErrorText(body))
}

// ErrorText extracts {"Error": "..."} bodies (tailscaled's, headscale's), or returns the
// text, trimmed and shortened.
func ErrorText(b []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
