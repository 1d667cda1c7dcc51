package netfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// localAPI talks to the local tailscaled over its unix socket with plain HTTP and the few
// JSON fields we need (tailscale.com is not linked into the binary).
type localAPI struct {
	socket string
	hc     *http.Client
}

func newLocalAPI(socket string) *localAPI {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &localAPI{socket: socket, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// tsPrefs is the part of ipn.Prefs we read.
type tsPrefs struct {
	AdvertiseRoutes []netip.Prefix
}

// tsSelf is the part of ipnstate.Status we read.
type tsSelf struct {
	BackendState string
	Self         *struct {
		PublicKey    string
		TailscaleIPs []netip.Addr
	}
}

const maxLocalAPIBody = 4 << 20

func (c *localAPI) do(ctx context.Context, method, path string, body any, out any) error {
	b, err := c.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("tailscaled LocalAPI %s %s: bad JSON: %w", method, path, err)
	}
	return nil
}

func (c *localAPI) raw(ctx context.Context, method, path string, body any) ([]byte, error) {
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
		return nil, fmt.Errorf("tailscaled LocalAPI at %s (subnet.tailscaled_socket): %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLocalAPIBody))
	if err != nil {
		return nil, fmt.Errorf("tailscaled LocalAPI %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tailscaled LocalAPI %s %s: %s: %s", method, path, resp.Status, errorText(b))
	}
	return b, nil
}

// errorText extracts {"Error": "..."} bodies, or returns the (trimmed, shortened) text.
func errorText(b []byte) string {
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

func (c *localAPI) prefs(ctx context.Context) (tsPrefs, error) {
	b, err := c.raw(ctx, http.MethodGet, "/localapi/v0/prefs", nil)
	if err != nil {
		return tsPrefs{}, err
	}
	return parsePrefs(b)
}

// parsePrefs reads AdvertiseRoutes out of tailscaled's prefs JSON.
func parsePrefs(b []byte) (tsPrefs, error) {
	var p tsPrefs
	if err := json.Unmarshal(b, &p); err != nil {
		return tsPrefs{}, fmt.Errorf("tailscaled prefs: bad JSON: %w", err)
	}
	for _, r := range p.AdvertiseRoutes {
		if !r.IsValid() {
			return tsPrefs{}, fmt.Errorf("tailscaled prefs: invalid route %v in AdvertiseRoutes", r)
		}
	}
	return p, nil
}

// setRoutes replaces AdvertiseRoutes; the body is an ipn.MaskedPrefs (Prefs fields embedded,
// plus the …Set flags naming which fields to change).
func (c *localAPI) setRoutes(ctx context.Context, routes []netip.Prefix) (tsPrefs, error) {
	if routes == nil {
		routes = []netip.Prefix{} // null would not clear the list
	}
	body := struct {
		AdvertiseRoutesSet bool
		AdvertiseRoutes    []netip.Prefix
	}{true, routes}
	b, err := c.raw(ctx, http.MethodPatch, "/localapi/v0/prefs", body)
	if err != nil {
		return tsPrefs{}, err
	}
	return parsePrefs(b)
}

func (c *localAPI) self(ctx context.Context) (tsSelf, error) {
	var s tsSelf
	err := c.do(ctx, http.MethodGet, "/localapi/v0/status?peers=false", nil, &s)
	return s, err
}
