package relay

import (
	"fmt"
	"io"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/verify"
)

// WriteMetrics writes the relay's counters in the Prometheus text format, named as derper
// names them (derp_*, stun_*) so existing dashboards keep working.
func (r *Relay) WriteMetrics(w io.Writer) {
	st := r.derp.Stats()
	m := func(kind, name string, v int64, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, kind, name, v)
	}
	m("gauge", "derp_current_connections", st.CurrentConns.Load(), "Connections now.")
	m("gauge", "derp_current_home_connections", st.CurrentHome.Load(), "Connections whose client calls this its home relay.")
	m("gauge", "derp_current_dup_client_keys", st.DupKeys.Load(), "Keys connected more than once.")
	m("counter", "derp_dup_client_conns_closed", st.DupEvicted.Load(), "Connections closed because their key had too many newer ones.")
	m("gauge", "derp_watchers", st.Watchers.Load(), "Mesh peers watching connections.")
	m("counter", "derp_accepts", st.Accepts.Load(), "Connections that completed the DERP handshake.")
	m("counter", "derp_bytes_received", st.BytesRecv.Load(), "Packet bytes received from clients.")
	m("counter", "derp_bytes_sent", st.BytesSent.Load(), "Packet bytes written to clients.")
	m("counter", "derp_packets_received", st.PacketsRecv.Load(), "Packets received from clients.")
	m("counter", "derp_packets_sent", st.PacketsSent.Load(), "Packets written to clients.")
	m("counter", "derp_packets_forwarded_out", st.PacketsForwardedOut.Load(), "Packets forwarded to mesh peers.")
	m("counter", "derp_packets_forwarded_in", st.PacketsForwardedIn.Load(), "Packets received from mesh peers.")
	m("counter", "derp_home_moves_in", st.HomeMovesIn.Load(), "Clients that made this their home.")
	m("counter", "derp_home_moves_out", st.HomeMovesOut.Load(), "Clients that moved their home away.")
	m("counter", "derp_got_ping", st.GotPing.Load(), "Pings received.")
	m("counter", "derp_sent_pong", st.SentPong.Load(), "Pongs sent.")
	m("counter", "derp_peer_gone_disconnected_frames", st.PeerGoneDisconnect.Load(), "PeerGone(disconnected) frames sent.")
	m("counter", "derp_peer_gone_not_here_frames", st.PeerGoneNotHere.Load(), "PeerGone(not here) frames sent.")
	m("counter", "derp_sclient_write_timeouts", st.WriteTimeouts.Load(), "Clients dropped for not reading.")
	m("counter", "derp_websocket_accepts", st.WebSocketAccepts.Load(), "WebSocket upgrades.")
	m("counter", "derp_fast_start_accepts", st.FastStarts.Load(), "Upgrades that used fast start.")
	m("counter", "derp_handshake_failures", st.HandshakeFailures.Load(), "Connections that failed the DERP handshake.")
	m("counter", "derp_clients_refused", st.Rejected.Load(), "Clients refused by client verification.")
	m("counter", "derp_clients_rejected_full", st.RejectedFull.Load(), "Clients turned away after the handshake: max_clients reached (mesh peers still get in).")
	m("counter", "derp_counter_packets_received_kind_disco", st.DiscoPacketsRecv.Load(), "Disco packets received.")
	fmt.Fprintf(w, "# HELP derp_packets_dropped Packets dropped, by reason.\n# TYPE derp_packets_dropped counter\n")
	for i, reason := range derp.DropReasonNames {
		fmt.Fprintf(w, "derp_packets_dropped{reason=%q} %d\n", reason, st.PacketsDropped[i].Load())
	}
	fmt.Fprintf(w, "# HELP derp_bytes_dropped Bytes dropped, by reason.\n# TYPE derp_bytes_dropped counter\n")
	for i, reason := range derp.DropReasonNames {
		fmt.Fprintf(w, "derp_bytes_dropped{reason=%q} %d\n", reason, st.BytesDropped[i].Load())
	}
	ls := &r.listenStats
	fmt.Fprintf(w, "# HELP tls_listener_connections Connections at the listener, by outcome.\n# TYPE tls_listener_connections counter\n")
	for _, o := range []struct {
		name string
		v    int64
	}{{"accepted", ls.Accepted.Load()}, {"rejected_rate", ls.RejectedRate.Load()}, {"rejected_source_rate", ls.RejectedSourceRate.Load()},
		{"rejected_source_pending", ls.RejectedSourcePending.Load()}, {"rejected_pending_full", ls.RejectedPendingFull.Load()},
		{"evicted", ls.Evicted.Load()}, {"expired", ls.Expired.Load()}, {"admitted", ls.Admitted.Load()}} {
		fmt.Fprintf(w, "tls_listener_connections{outcome=%q} %d\n", o.name, o.v)
	}
	m("gauge", "tls_listener_open_connections", ls.Open.Load(), "TCP connections open now.")
	m("gauge", "tls_listener_pending_connections", ls.Pending.Load(), "Connections not yet authenticated (handshakes, plain HTTP).")
	used, limit := r.derp.QueuedBytes()
	m("gauge", "derp_queued_bytes", used, "Bytes waiting in client and mesh queues.")
	m("gauge", "derp_queued_bytes_limit", limit, "The budget all queues share.")
	v := r.verify.Stats()
	m("counter", "derp_verify_admitted_total", v.Admitted, "Clients admitted (by a check, or unverified when none is set).")
	m("counter", "derp_verify_refused_total", v.Refused, "Clients refused by client verification.")
	m("counter", "derp_verify_unverified_total", v.Unverified, "Clients admitted with no check configured.")
	m("counter", "derp_verify_fail_open_total", v.FailOpen, "Clients admitted because the admission URL was unreachable.")
	fmt.Fprintf(w, "# HELP derp_verify_errors_total Checks that could not answer, by check.\n# TYPE derp_verify_errors_total counter\n")
	for _, c := range []struct {
		name string
		cs   verify.CheckStats
	}{{"allow", v.Allow}, {"tailscaled", v.Tailscaled}, {"url", v.URL}} {
		fmt.Fprintf(w, "derp_verify_errors_total{check=%q} %d\n", c.name, c.cs.Errors)
	}
	s := r.STUNStats()
	fmt.Fprintf(w, "# HELP stun_counter_requests STUN datagrams, by disposition.\n# TYPE stun_counter_requests counter\n")
	for _, d := range []struct {
		name string
		v    uint64
	}{{"success", s.Success}, {"not_stun", s.NotSTUN}, {"bad_source", s.BadSource}, {"read_error", s.ReadError}, {"write_error", s.WriteError}} {
		fmt.Fprintf(w, "stun_counter_requests{disposition=%q} %d\n", d.name, d.v)
	}
	fmt.Fprintf(w, "# HELP stun_counter_addrfamily STUN answers, by address family.\n# TYPE stun_counter_addrfamily counter\n")
	fmt.Fprintf(w, "stun_counter_addrfamily{family=\"ipv4\"} %d\nstun_counter_addrfamily{family=\"ipv6\"} %d\n", s.IPv4, s.IPv6)
}
