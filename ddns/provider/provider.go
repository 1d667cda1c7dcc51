// Package provider builds libdns DNS providers (Cloudflare, RFC 2136, Alibaba Cloud DNS,
// Huawei Cloud DNS, Tencent Cloud DNSPod, and the free dynamic DNS services DuckDNS and
// dynv6) from the config's provider section, so ddns and acme drive every DNS service
// through the same four libdns calls.
package provider

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/libdns/alidns"
	"github.com/libdns/huaweicloud"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
)

// Provider is what ddns and acme need from a DNS service.
type Provider interface {
	libdns.RecordGetter
	libdns.RecordSetter
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Options adjust how providers reach their API.
type Options struct {
	// HTTPClient carries API calls for HTTP providers that accept one (cloudflare, duckdns,
	// dynv6); nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// New returns the provider p describes, after checking it (Validate).
func New(p Config, opts Options) (Provider, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	switch p.Type {
	case "cloudflare":
		return newCloudflare(p.APIToken, hc), nil
	case "duckdns":
		return &duckDNS{token: p.APIToken, hc: hc}, nil
	case "dynv6":
		return &dynv6{token: p.APIToken, hc: hc}, nil
	case "rfc2136":
		alg := TSIGAlgorithm(p.KeyAlg)
		if alg == "" {
			alg = "hmac-sha256"
		}
		server, err := withPort(p.Server, "53")
		if err != nil {
			return nil, fmt.Errorf("rfc2136: server: %w", err)
		}
		// libdns/rfc2136 always signs; Validate made sure there is a key to sign with.
		return &rfc2136.Provider{KeyName: p.KeyName, KeyAlg: alg, Key: p.Key, Server: server}, nil
	case "alidns":
		return &alidns.Provider{CredentialInfo: alidns.CredentialInfo{
			AccessKeyID: p.AccessKeyID, AccessKeySecret: p.AccessKeySecret, RegionID: p.Region,
		}}, nil
	case "huaweicloud":
		return &huaweicloud.Provider{AccessKeyId: p.AccessKeyID, SecretAccessKey: p.AccessKeySecret, RegionId: p.Region}, nil
	}
	return newTencentCloud(p.SecretID, p.SecretKey, hc), nil // tencentcloud, dnspod
}

// withPort returns host:port, adding def when s names no port.
func withPort(s, def string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty")
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if strings.ContainsAny(host, "[]/ ") {
		return "", fmt.Errorf("%q is not host or host:port", s)
	}
	return net.JoinHostPort(host, def), nil
}

// Fqdn returns zone with exactly one trailing dot, the form libdns providers expect.
func Fqdn(zone string) string {
	return strings.TrimSuffix(zone, ".") + "."
}

// ctxKey carries a per-call recorder of failed API requests (see cloudflareProvider).
type ctxKey struct{}
