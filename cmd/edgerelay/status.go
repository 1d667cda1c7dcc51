package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/relay"
)

// printStatus asks the daemon (through the socket in the config's state dir) and prints its
// answer for people, or as JSON.
func printStatus(ctx context.Context, w io.Writer, cfg *config.Config, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := agent.QueryStatus(ctx, cfg.StateDir)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("edgerelay %s, up %s, config %s", st.Version, st.Uptime, st.Config)
	for _, warn := range st.Warnings {
		p("WARNING: %s", warn)
	}
	if st.MapStale && st.DERPMap != nil {
		p("The DERP map to paste now:")
		relay.WriteDERPMap(w, "tailscale", *st.DERPMap)
	}
	names := make([]string, 0, len(st.Parts))
	for n := range st.Parts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p("  part %-7s %s", n, st.Parts[n])
	}
	if r := st.Relay; r != nil {
		p("relay: %s (stun %s), tls %s, key %s", r.Listen, orNone(r.STUNListen), r.TLSMode, r.ServerKey)
		p("  admits %s", r.Admits)
		if !r.CertNotAfter.IsZero() {
			p("  certificate valid until %s (%s left)", r.CertNotAfter.Format(time.RFC3339), time.Until(r.CertNotAfter).Round(time.Hour))
		}
		p("  clients %d (home %d), %d connections not yet authenticated; refused by verification %d, over max_clients %d",
			r.Clients, r.HomeClients, r.Pending, r.Refused, r.RejectedFull)
		p("  connections: accepted %d; turned away over rate %d, over pending limits %d; pending ones closed %d",
			r.Accepted, r.RejectedRate, r.RejectedBusy, r.Evicted)
		p("  relayed %d packets / %d bytes in, %d packets / %d bytes out; write timeouts %d",
			r.PacketsIn, r.BytesIn, r.PacketsOut, r.BytesOut, r.WriteTimeouts)
		if len(r.Dropped) > 0 {
			var ds []string
			for reason, n := range r.Dropped {
				ds = append(ds, fmt.Sprintf("%s=%d", reason, n))
			}
			sort.Strings(ds)
			p("  dropped: %s", strings.Join(ds, " "))
		}
		p("  queued now %d bytes of %d", r.QueuedBytes, r.QueueBudget)
		p("  stun: %d answered (%d IPv4, %d IPv6), %d not STUN", r.STUN.Success, r.STUN.IPv4, r.STUN.IPv6, r.STUN.NotSTUN)
	}
	if st.Addrs.IPv4.IsValid() || st.Addrs.IPv6.IsValid() {
		p("addresses: IPv4 %s, IPv6 %s", addrOrNone(st.Addrs.IPv4.String(), st.Addrs.IPv4.IsValid()), addrOrNone(st.Addrs.IPv6.String(), st.Addrs.IPv6.IsValid()))
	}
	for _, r := range st.DDNS {
		line := fmt.Sprintf("ddns: %s %s from %s: %s (published %s)", r.Name, r.Type, r.Source,
			addrOrNone(r.Address.String(), r.Address.IsValid()), addrOrNone(r.Published.String(), r.Published.IsValid()))
		if r.Error != "" {
			line += "; error: " + r.Error
		}
		p("%s", line)
	}
	if a := st.ACME; a != nil {
		p("acme: %s, valid until %s", strings.Join(a.Domains, ", "), a.NotAfter.Format(time.RFC3339))
	}
	if s := st.Subnet; s != nil {
		switch {
		case s.Checked.IsZero():
			p("subnet: the first apply is still running")
		case s.Error != "":
			p("subnet (as of %s): %s", s.Checked.Format(time.TimeOnly), s.Error)
		default:
			p("subnet (as of %s): all in place: %v", s.Checked.Format(time.TimeOnly), s.InPlace)
		}
		for _, it := range s.Items {
			p("  %s", it)
		}
	}
	if pr := st.PeerRelay; pr != nil {
		p("peer relay: udp %d, static endpoints %v; tailscaled %s has them: %v; %d relay sessions (-1: unknown)",
			pr.Port, pr.Endpoints, pr.Tailscaled, pr.InPrefs, pr.Sessions)
		p("  firewall %s, port open: %v; put back after other tools changed them: %d times", pr.Firewall, pr.PortOpen, pr.Reasserted)
		if pr.Error != "" {
			p("  error: %s", pr.Error)
		}
	}
	for _, w := range st.Webhooks {
		p("webhook %s: %d sent, %d failed, %d dropped, %d queued; last error: %s", w.URL, w.Sent, w.Failed, w.Dropped, w.Queued, addrOrNone(w.LastError, w.LastError != ""))
	}
	p("memory: heap %.1f MB, from the OS %.1f MB, %d goroutines", float64(st.Memory.HeapBytes)/1e6, float64(st.Memory.SysBytes)/1e6, st.Memory.Goroutines)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func addrOrNone(s string, ok bool) string {
	if !ok {
		return "none"
	}
	return s
}
