// Package relay serves the DERP relay and STUN server that Tailscale clients use: it owns the
// listeners, TLS (one certificate source for manual, self-signed and ACME certificates), the
// HTTP endpoints around /derp, the server key, and this node's DERP map entry. The protocol
// itself lives in relay/derp, STUN in relay/stun.
package relay
