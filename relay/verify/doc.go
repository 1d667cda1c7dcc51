// Package verify decides which DERP clients may use the relay. A connecting node key is
// admitted when one configured check says yes, tried cheapest first: the static allow list,
// the local tailscaled (LocalAPI whois by node key over its unix socket, what
// derper --verify-clients asks), and an admission URL (headscale's /verify protocol, what
// derper --verify-client-url posts).
//
// With no check configured, a relay reachable beyond loopback fails closed: it asks the
// local tailscaled found at the usual socket paths (picked up whenever it starts), and
// refuses every client while there is none. Admitting everyone takes an explicit
// verify_clients.open; only a loopback-only listener (trying the relay locally) is open
// without it. Warning and Advice say which of these applies, for status and `check`.
//
// The package speaks both protocols with the standard library only; tailscale.com is used by
// its tests, never by the shipped code.
package verify
