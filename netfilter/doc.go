// Package netfilter prepares the box to be a Tailscale subnet router: IP forwarding sysctls,
// policy routing rules towards tailscaled's table 52, forward/masquerade/MSS-clamp firewall
// rules (iptables or OpenWrt's fw4), and route advertisement to the local tailscaled. It can
// list and undo everything it changed.
package netfilter
