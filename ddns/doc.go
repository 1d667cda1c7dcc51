// Package ddns keeps A/AAAA records pointing at this line's current addresses. Addresses
// come from an interface (kernel netlink events, chosen by the selection rules in Select),
// possibly combined with a LAN host's interface identifier, an HTTP echo service, a STUN
// server, or a fixed value; records are written through a libdns provider only when the
// address differs from what DNS holds, with debouncing and retries. It also holds the one
// rule for what counts as this line's public address (IsPublic), which the agent applies
// to the relay's addresses too.
package ddns
