package verify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Warning says, for status, when the relay admits anyone (open on a reachable listener) or
// refuses everyone (no check that can answer: no tailscaled found, or a configured
// tailscaled that is down and is the only check). It is "" otherwise.
func (v *Verifier) Warning() string {
	switch {
	case v.mode == ModeOpen && v.reachable:
		return "relay.verify_clients.open is set and the DERP listener is reachable beyond loopback: " +
			"anyone who finds this relay can use this line's bandwidth"
	case v.mode == ModeAuto && !v.tailscaledUp():
		return "refusing every client: no client check is configured and no tailscaled answers at " +
			strings.Join(v.checks[0].(*tailscaled).api.Sockets, ", ") + ". " + admitHowTo
	case v.mode == ModeChecks && len(v.checks) == 1 && !v.tailscaledUp():
		return "refusing every client: " + v.checks[0].(*tailscaled).where() + " does not answer (tailscaled_socket is the only check)"
	}
	return ""
}

// admitHowTo lists the ways to admit one's own devices.
const admitHowTo = "To admit your own devices: run tailscaled on this box (it is found by itself), " +
	"or set relay.verify_clients.url (headscale's /verify) or relay.verify_clients.allow (node keys); " +
	"relay.verify_clients.open admits everyone"

// tailscaledUp reports whether the tailscaled check (the only one, when this is asked)
// answered its last probe. Other checks count as up.
func (v *Verifier) tailscaledUp() bool {
	t, ok := v.checks[0].(*tailscaled)
	return !ok || t.socket() != ""
}

// Describe says in one line who is admitted, for status.
func (v *Verifier) Describe() string {
	switch v.mode {
	case ModeOpen:
		if v.reachable {
			return "everyone (relay.verify_clients.open)"
		}
		return "everyone (no check; the listener is loopback-only)"
	case ModeAuto:
		if s := v.checks[0].(*tailscaled).socket(); s != "" {
			return "nodes the local tailscaled knows (found at " + s + ")"
		}
		return "nobody: no check is configured and no local tailscaled was found"
	}
	return "a client one of these admits: " + strings.Join(v.Checks(), ", ")
}

// Run logs who is admitted once, then keeps probing the tailscaled check (every few
// seconds) until ctx ends, logging when tailscaled appears or goes away, so that the log
// and status say why clients are refused before the first one is. The admission URL is
// probed once.
func (v *Verifier) Run(ctx context.Context) {
	t, _ := v.tailscaledCheck()
	switch {
	case v.mode == ModeOpen && v.reachable:
		v.log.Error("RELAY IS OPEN TO EVERYONE: " + v.Warning())
	case v.mode == ModeOpen:
		v.log.Info("no client check: everyone is admitted (the listener is loopback-only)")
	}
	for _, c := range v.checks {
		if _, ok := c.(*tailscaled); !ok {
			if err := c.preflight(ctx); err != nil {
				v.log.Warn("client verification cannot answer yet", "check", c.name(), "err", err)
			}
		}
	}
	if t == nil {
		return
	}
	var last error
	first := true
	for {
		err := t.preflight(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && (first || last != nil):
			v.log.Info("local tailscaled answers: admitting the nodes it knows", "socket", t.socket(), "found_automatically", t.api.Auto)
		case err != nil && (first || last == nil || last.Error() != err.Error()):
			if w := v.Warning(); w != "" {
				v.log.Error(strings.ToUpper(w[:1])+w[1:], "err", err)
			} else {
				v.log.Warn("local tailscaled cannot answer", "err", err)
			}
		}
		last, first = err, false
		select {
		case <-ctx.Done():
			return
		case <-time.After(v.probeEvery):
		}
	}
}

func (v *Verifier) tailscaledCheck() (*tailscaled, bool) {
	for _, c := range v.checks {
		if t, ok := c.(*tailscaled); ok {
			return t, true
		}
	}
	return nil, false
}

// FindTailscaled returns the first of DefaultTailscaledSockets where a process accepts
// connections, or "".
func FindTailscaled(ctx context.Context) string {
	for _, s := range DefaultTailscaledSockets {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "unix", s)
		cancel()
		if err == nil {
			c.Close()
			return s
		}
	}
	return ""
}

// Advice is what `edgerelay check` says about client verification for a relay listening on
// listen: nothing when a check is configured or the listener is loopback-only; otherwise a
// warning with the exact lines to add, written by line(key, value) in the config's format
// (key is a YAML path such as relay.verify_clients.url).
func Advice(ctx context.Context, listen string, open, configured bool, line func(key, value string) string) []string {
	if configured || LoopbackOnly(listen) {
		return nil
	}
	if open {
		return []string{fmt.Sprintf("warning: the relay on %q admits anyone who finds it (%s); to admit only your own devices remove it and use a check:\n%s",
			listen, line("relay.verify_clients.open", "true"), checkLines(line))}
	}
	if s := FindTailscaled(ctx); s != "" {
		return []string{fmt.Sprintf("note: no client check is configured: the relay admits the nodes of the local tailscaled (found at %s) and refuses the rest", s)}
	}
	return []string{fmt.Sprintf("warning: the relay on %q will refuse every client: no client check is configured and no tailscaled answers at %s.\n"+
		"To admit your own devices, run tailscaled on this box (it is found by itself), or add one of:\n%s\n"+
		"or, to let anyone relay through this line:\n  %s",
		listen, strings.Join(DefaultTailscaledSockets, ", "), checkLines(line), line("relay.verify_clients.open", "true"))}
}

func checkLines(line func(key, value string) string) string {
	return "  " + line("relay.verify_clients.url", "https://headscale.example.com/verify") + "\n" +
		"  " + line("relay.verify_clients.allow", "nodekey:… (a device's Self.PublicKey in `tailscale status --json`)")
}

// LoopbackOnly reports whether a listen address binds only loopback. An empty host, an
// unspecified or other address, a host name other than localhost, and anything unparsable
// count as reachable.
func LoopbackOnly(listen string) bool {
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
