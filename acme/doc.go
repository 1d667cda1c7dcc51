// Package acme obtains and renews the relay's certificate from an ACME CA (Let's Encrypt or
// any other) by DNS-01, writing the challenge TXT records through a libdns provider. The
// account and certificate live in state_dir so a restart reuses them; an ACME profile
// (Let's Encrypt's classic, tlsserver, shortlived) can be asked for; renewal follows the
// CA's ARI window when offered (else two thirds of the lifetime, half for short-lived
// certificates), with checks and retries never further apart than a tenth of the lifetime,
// and swaps the new certificate in for the next TLS handshake while the old one keeps
// serving.
//
// A Manager's Run returns only when all of its work has stopped: no order, DNS-01 record
// or propagation poll outlives it (lego.go).
package acme
