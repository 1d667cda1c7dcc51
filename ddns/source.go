package ddns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// maxEchoBody bounds what is read from an address echo service.
const maxEchoBody = 4 << 10

// ParseEcho extracts the address from an echo service's answer: a plain-text body holding
// one IP address, possibly surrounded by whitespace or brackets.
func ParseEcho(body []byte) (netip.Addr, error) {
	f := bytes.Fields(body)
	if len(f) == 0 {
		return netip.Addr{}, fmt.Errorf("empty answer")
	}
	s := strings.TrimSuffix(strings.TrimPrefix(string(f[0]), "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("answer %q is not an IP address", truncate(string(f[0]), 64))
	}
	return a.Unmap(), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// echoClient returns an HTTP client that reaches the echo service over one address family
// and never through a proxy, so the address it reports is this line's own.
func echoClient(typ string, base *http.Client) *http.Client {
	if base != nil {
		return base
	}
	network := "tcp6"
	if typ == "A" {
		network = "tcp4"
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			TLSHandshakeTimeout: 10 * time.Second,
			DisableKeepAlives:   true,
		},
	}
}

// fetchEcho asks an echo service for this line's address.
func fetchEcho(ctx context.Context, c *http.Client, url string) (netip.Addr, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return netip.Addr{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return netip.Addr{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEchoBody))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return netip.Addr{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return ParseEcho(body)
}
