package provider

import (
	"encoding/base64"
	"strings"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Config is a DNS provider section (ddns.provider, acme.dns_provider). Which keys apply
// depends on Type. A secret's *_file key is read by the config loader into the secret's key
// (APITokenFile into APIToken, …); New uses the secrets themselves.
type Config struct {
	Type string `yaml:"type"`
	// cloudflare (an API token), duckdns (the account's token), dynv6 (an HTTP token)
	APIToken     string `yaml:"api_token"`
	APITokenFile string `yaml:"api_token_file"`
	// rfc2136
	Server  string `yaml:"server"`
	KeyName string `yaml:"key_name"`
	KeyAlg  string `yaml:"key_alg"`
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
	// alidns, huaweicloud
	AccessKeyID         string `yaml:"access_key_id"`
	AccessKeySecret     string `yaml:"access_key_secret"`
	AccessKeySecretFile string `yaml:"access_key_secret_file"`
	Region              string `yaml:"region"`
	// tencentcloud (alias dnspod): a Tencent Cloud API key (CAM SecretId/SecretKey)
	SecretID      string `yaml:"secret_id"`
	SecretKey     string `yaml:"secret_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
}

// IsZero reports whether no provider was configured (acme then reuses ddns.provider).
func (p Config) IsZero() bool { return p == Config{} }

// Types lists the provider types New understands (dnspod: Tencent Cloud DNSPod, as
// tencentcloud).
var Types = []string{"alidns", "cloudflare", "dnspod", "duckdns", "dynv6", "huaweicloud", "rfc2136", "tencentcloud"}

// TSIGAlgorithms are the key_alg values for rfc2136 (BIND and Knot accept them all); the
// trailing dot of the FQDN form and case do not matter.
var TSIGAlgorithms = []string{"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}

// TSIGAlgorithm is key_alg in the form TSIGAlgorithms lists.
func TSIGAlgorithm(keyAlg string) string { return strings.ToLower(strings.TrimSuffix(keyAlg, ".")) }

// Validate checks the section on its own; keys are relative to it. A secret counts as given
// when its *_file key is set (the loader reports a file it cannot read).
func (p Config) Validate() error {
	var ps field.Problems
	secret := func(key, value, file, format string, args ...any) {
		if value == "" && file == "" {
			ps.Add(key, format, args...)
		}
	}
	if p.Type == "" {
		ps.Add("type", "required (one of %s)", strings.Join(Types, ", "))
		return ps.Err()
	}
	ps.OneOf("type", p.Type, Types...)
	switch p.Type {
	case "cloudflare":
		secret("api_token", p.APIToken, p.APITokenFile, "required (or api_token_file): a Cloudflare API token with Zone.DNS edit rights")
	case "duckdns":
		secret("api_token", p.APIToken, p.APITokenFile, "required (or api_token_file): the token shown on your DuckDNS account page")
	case "dynv6":
		secret("api_token", p.APIToken, p.APITokenFile, "required (or api_token_file): an HTTP token from dynv6.com/keys")
	case "rfc2136":
		if p.Server == "" {
			ps.Add("server", "required: the DNS server accepting updates, host:port")
		}
		if p.KeyName == "" {
			ps.Add("key_name", "required: the TSIG key name the server allows updates for")
		}
		secret("key", p.Key, p.KeyFile, "required (or key_file): the TSIG secret (base64)")
		if _, err := base64.StdEncoding.DecodeString(p.Key); err != nil {
			ps.Add("key", "not base64 (as tsig-keygen prints it)")
		}
		if p.KeyAlg != "" {
			ps.OneOf("key_alg", TSIGAlgorithm(p.KeyAlg), TSIGAlgorithms...)
		}
	case "alidns", "huaweicloud":
		if p.AccessKeyID == "" {
			ps.Add("access_key_id", "required for %s", p.Type)
		}
		secret("access_key_secret", p.AccessKeySecret, p.AccessKeySecretFile, "required (or access_key_secret_file) for %s", p.Type)
	case "tencentcloud", "dnspod":
		if p.SecretID == "" {
			ps.Add("secret_id", "required for %s: the SecretId of a Tencent Cloud API key", p.Type)
		}
		secret("secret_key", p.SecretKey, p.SecretKeyFile, "required (or secret_key_file) for %s: the SecretKey of that API key", p.Type)
	}
	return ps.Err()
}
