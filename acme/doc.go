// Package acme obtains and renews the relay's certificate from an ACME CA (Let's Encrypt)
// through DNS-01, using lego's core client and a DNS-01 provider backed by libdns. It keeps
// the account and certificates in the state directory and hands renewed certificates to the
// relay without a restart.
package acme
