package verify

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
)

// OpenWarning returns the warning for a relay anyone can use: v has no checks and listen
// (host:port) accepts connections from beyond loopback. It returns "" otherwise.
func OpenWarning(listen string, v *Verifier) string {
	if v != nil && v.Configured() {
		return ""
	}
	if loopbackOnly(listen) {
		return ""
	}
	return fmt.Sprintf("relay.verify_clients has no checks and the DERP listener %q is reachable beyond loopback: "+
		"anyone who finds this relay can use its bandwidth; set relay.verify_clients.tailscaled_socket, url or allow", listen)
}

// WarnIfOpen logs OpenWarning loudly (at error level, once) and returns it for status.
func WarnIfOpen(listen string, v *Verifier, log *slog.Logger) string {
	w := OpenWarning(listen, v)
	if w != "" && log != nil {
		log.Error("RELAY IS OPEN TO EVERYONE: "+w, "component", "verify")
	}
	return w
}

// loopbackOnly reports whether a listen address binds only loopback. An empty host, an
// unspecified or other address, a host name other than localhost, and anything unparsable
// count as reachable.
func loopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
