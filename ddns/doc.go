// Package ddns keeps DNS records pointing at the line's current addresses: it watches
// interface addresses through netlink (or asks an HTTP echo service), selects the address
// worth publishing, and updates the records through a libdns provider.
package ddns
