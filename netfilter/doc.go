// Package netfilter prepares the box to be a Tailscale subnet router: IP forwarding sysctls,
// policy routing rules towards tailscaled's table 52, forward/masquerade/MSS-clamp firewall
// rules (own iptables chains, OpenWrt fw4 include files, or an own nftables table), and route
// advertisement to the local tailscaled over its LocalAPI socket. A Reconciler makes the
// system match the config idempotently, keeps it so on netlink events, records what it changed
// in the state dir, and can list and undo all of it. It never touches what tailscaled owns
// (table 52's routes, ip rules 5200-5299, the ts-* chains).
package netfilter
