// Package stun is edgerelay's STUN binding server: it answers RFC 5389/8489
// Binding Requests on UDP with the client's reflexive transport address
// (one XOR-MAPPED-ADDRESS), which is what Tailscale's netcheck and magicsock
// use to learn their public endpoint and to measure latency to a DERP region.
//
// It differs from Tailscale's derper in a few deliberate ways:
//
//   - It answers any well-formed Binding Request, not only ones carrying
//     SOFTWARE "tailnode" and a FINGERPRINT. Generic STUN clients (pion,
//     stunclient, browsers' ICE) are then useful for checking that the
//     port is reachable, which derper users keep asking for (tailscale#4177).
//     The cost is bounded: the answer is always exactly 32 bytes (IPv4) or
//     44 bytes (IPv6) and is never sent to port 0 or to an unspecified or
//     multicast source, so a spoofed 20-byte request is reflected as at
//     most 44 bytes (2.2x), the bound of any RFC 5389 server; derper's
//     40-byte minimum request keeps it near 1x.
//   - It is stricter where strictness is cheap: the header length must match
//     the datagram exactly, attributes must fit, and a FINGERPRINT, when
//     present, must be the last attribute and valid.
//   - On a dual-stack socket an IPv4 client gets family 0x01 with its plain
//     IPv4 address rather than the ::ffff:a.b.c.d form derper sends.
//   - A bind error is returned by Listen, never swallowed.
//
// The hot path (read, parse, answer) reuses one read and one write buffer per
// Server and does not allocate.
package stun
