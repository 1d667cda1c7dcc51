// Package verify decides which DERP clients may use the relay. A connecting node key is
// admitted when one configured check says yes, tried cheapest first: the static allow list,
// the local tailscaled (LocalAPI whois by node key over its unix socket, what
// derper --verify-clients asks), and an admission URL (headscale's /verify protocol, what
// derper --verify-client-url posts). With no check configured everyone is admitted, and
// OpenWarning says when that leaves a reachable relay open to strangers.
//
// The package speaks both protocols with the standard library only; tailscale.com is used by
// its tests, never by the shipped code.
package verify
