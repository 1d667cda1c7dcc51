// Package peerrelay makes the box's tailscaled a Tailscale Peer Relay (tailscaled 1.86+):
// it sets the relay server port and static endpoints on tailscaled through masked LocalAPI
// prefs edits, keeps the endpoints in step with the line's public addresses, puts them back
// when another tool (a `tailscale up`/`set`, an init script, a LuCI app) clears them, opens
// the UDP port in the firewall with the subnet's backends, and undoes all of it from what
// it recorded in the state dir.
package peerrelay
