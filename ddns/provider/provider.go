// Package provider builds libdns DNS providers (Cloudflare, RFC 2136, Alibaba Cloud DNS,
// Huawei Cloud DNS, Tencent Cloud DNSPod, and the free dynamic DNS services DuckDNS and
// dynv6) from the config's provider section, so ddns and acme drive every DNS service
// through the same four libdns calls.
package provider

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/libdns/alidns"
	"github.com/libdns/huaweicloud"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"

	"github.com/edgerelay/edgerelay/agent/config"
)

// Provider is what ddns and acme need from a DNS service.
type Provider interface {
	libdns.RecordGetter
	libdns.RecordSetter
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Types lists the provider types New understands (agent/config keeps the same list for check).
var Types = []string{"alidns", "cloudflare", "dnspod", "duckdns", "dynv6", "huaweicloud", "rfc2136", "tencentcloud"} // dnspod: Tencent Cloud DNSPod, as tencentcloud

// Options adjust how providers reach their API.
type Options struct {
	// HTTPClient carries API calls for HTTP providers that accept one (cloudflare, duckdns,
	// dynv6); nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// New returns the provider described by p, reading secrets from their *_file keys.
func New(p config.Provider, opts Options) (Provider, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	switch p.Type {
	case "cloudflare":
		tok, err := config.ReadSecret(p.APIToken, p.APITokenFile, "api_token")
		if err != nil {
			return nil, err
		}
		if tok == "" {
			return nil, fmt.Errorf("cloudflare: api_token is empty")
		}
		return newCloudflare(tok, hc), nil
	case "duckdns", "dynv6":
		tok, err := config.ReadSecret(p.APIToken, p.APITokenFile, "api_token")
		if err != nil {
			return nil, err
		}
		if tok == "" {
			return nil, fmt.Errorf("%s: api_token is empty", p.Type)
		}
		if p.Type == "duckdns" {
			return &duckDNS{token: tok, hc: hc}, nil
		}
		return &dynv6{token: tok, hc: hc}, nil
	case "rfc2136":
		return newRFC2136(p)
	case "alidns", "huaweicloud":
		secret, err := config.ReadSecret(p.AccessKeySecret, p.AccessKeySecretFile, "access_key_secret")
		if err != nil {
			return nil, err
		}
		if p.AccessKeyID == "" || secret == "" {
			return nil, fmt.Errorf("%s: access_key_id and access_key_secret are required", p.Type)
		}
		if p.Type == "alidns" {
			return &alidns.Provider{CredentialInfo: alidns.CredentialInfo{
				AccessKeyID: p.AccessKeyID, AccessKeySecret: secret, RegionID: p.Region,
			}}, nil
		}
		return &huaweicloud.Provider{AccessKeyId: p.AccessKeyID, SecretAccessKey: secret, RegionId: p.Region}, nil
	case "tencentcloud", "dnspod":
		key, err := config.ReadSecret(p.SecretKey, p.SecretKeyFile, "secret_key")
		if err != nil {
			return nil, err
		}
		if p.SecretID == "" || key == "" {
			return nil, fmt.Errorf("%s: secret_id and secret_key are required", p.Type)
		}
		return newTencentCloud(p.SecretID, key, hc), nil
	case "":
		return nil, fmt.Errorf("provider type is empty (one of %s)", strings.Join(Types, ", "))
	}
	return nil, fmt.Errorf("unknown provider type %q (one of %s)", p.Type, strings.Join(Types, ", "))
}

func newRFC2136(p config.Provider) (Provider, error) {
	key, err := config.ReadSecret(p.Key, p.KeyFile, "key")
	if err != nil {
		return nil, err
	}
	if p.KeyName == "" || key == "" {
		// libdns/rfc2136 always signs; an unsigned update would be refused by any sane server.
		return nil, fmt.Errorf("rfc2136: key_name and key (TSIG) are required")
	}
	if _, err := base64.StdEncoding.DecodeString(key); err != nil {
		return nil, fmt.Errorf("rfc2136: key is not base64 (as tsig-keygen prints it): %v", err)
	}
	alg := config.TSIGAlgorithm(p.KeyAlg)
	if alg == "" {
		alg = "hmac-sha256"
	}
	if !slices.Contains(config.TSIGAlgorithms, alg) {
		return nil, fmt.Errorf("rfc2136: key_alg %q unknown (one of %s)", p.KeyAlg, strings.Join(config.TSIGAlgorithms, ", "))
	}
	server, err := withPort(p.Server, "53")
	if err != nil {
		return nil, fmt.Errorf("rfc2136: server: %w", err)
	}
	return &rfc2136.Provider{KeyName: p.KeyName, KeyAlg: alg, Key: key, Server: server}, nil
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
