package relay

import (
	"fmt"
	"io"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/verify"
)

// metric is one counter or gauge for writeMetrics.
type metric struct {
	kind, name, help string
	v                int64
}

// writeMetrics writes each metric with its HELP and TYPE lines: one Fprintf in a loop
// rather than one per metric keeps the binary smaller (this package is compiled with
// inlining).
func writeMetrics(w io.Writer, ms []metric) {
	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.kind, m.name, m.v)
	}
}

// WriteMetrics writes the relay's counters in the Prometheus text format, named as derper
// names them (derp_*, stun_*) so existing dashboards keep working.
func (r *Relay) WriteMetrics(w io.Writer) {
	st := r.derp.Stats()
	writeMetrics(w, []metric{
		{"gauge", "derp_current_connections", "Connections now.", st.CurrentConns.Load()},
		{"gauge", "derp_current_home_connections", "Connections whose client calls this its home relay.", st.CurrentHome.Load()},
		{"gauge", "derp_current_dup_client_keys", "Keys connected more than once.", st.DupKeys.Load()},
		{"counter", "derp_dup_client_conns_closed", "Connections closed because their key had too many newer ones.", st.DupEvicted.Load()},
		{"gauge", "derp_idle_parked_connections", "Idle connections waiting with no goroutine of their own.", st.IdleParked.Load()},
		{"gauge", "derp_watchers", "Mesh peers watching connections.", st.Watchers.Load()},
		{"counter", "derp_accepts", "Connections that completed the DERP handshake.", st.Accepts.Load()},
		{"counter", "derp_bytes_received", "Packet bytes received from clients.", st.BytesRecv.Load()},
		{"counter", "derp_bytes_sent", "Packet bytes written to clients.", st.BytesSent.Load()},
		{"counter", "derp_packets_received", "Packets received from clients.", st.PacketsRecv.Load()},
		{"counter", "derp_packets_sent", "Packets written to clients.", st.PacketsSent.Load()},
		{"counter", "derp_packets_sent_direct", "Packets written by the sending client's reader (the receiver was idle).", st.DirectWrites.Load()},
		{"counter", "derp_direct_write_leftovers", "Direct writes the socket did not take whole (finished by the receiver's sender).", st.DirectLeftovers.Load()},
		{"counter", "derp_packets_forwarded_out", "Packets forwarded to mesh peers.", st.PacketsForwardedOut.Load()},
		{"counter", "derp_packets_forwarded_in", "Packets received from mesh peers.", st.PacketsForwardedIn.Load()},
		{"counter", "derp_home_moves_in", "Clients that made this their home.", st.HomeMovesIn.Load()},
		{"counter", "derp_home_moves_out", "Clients that moved their home away.", st.HomeMovesOut.Load()},
		{"counter", "derp_got_ping", "Pings received.", st.GotPing.Load()},
		{"counter", "derp_sent_pong", "Pongs sent.", st.SentPong.Load()},
		{"counter", "derp_peer_gone_disconnected_frames", "PeerGone(disconnected) frames sent.", st.PeerGoneDisconnect.Load()},
		{"counter", "derp_peer_gone_not_here_frames", "PeerGone(not here) frames sent.", st.PeerGoneNotHere.Load()},
		{"counter", "derp_sclient_write_timeouts", "Clients dropped for not reading.", st.WriteTimeouts.Load()},
		{"counter", "derp_websocket_accepts", "WebSocket upgrades.", st.WebSocketAccepts.Load()},
		{"counter", "derp_fast_start_accepts", "Upgrades that used fast start.", st.FastStarts.Load()},
		{"counter", "derp_handshake_failures", "Connections that failed the DERP handshake.", st.HandshakeFailures.Load()},
		{"counter", "derp_clients_refused", "Clients refused by client verification.", st.Rejected.Load()},
		{"counter", "derp_clients_rejected_full", "Clients turned away after the handshake: max_clients reached (mesh peers still get in).", st.RejectedFull.Load()},
		{"counter", "derp_counter_packets_received_kind_disco", "Disco packets received.", st.DiscoPacketsRecv.Load()},
	})
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
	used, limit := r.derp.QueuedBytes()
	v := r.verify.Stats()
	writeMetrics(w, []metric{
		{"gauge", "tls_listener_open_connections", "TCP connections open now.", ls.Open.Load()},
		{"gauge", "tls_listener_pending_connections", "Connections not yet authenticated (handshakes, plain HTTP).", ls.Pending.Load()},
		{"gauge", "derp_queued_bytes", "Bytes waiting in client and mesh queues.", used},
		{"gauge", "derp_queued_bytes_limit", "The budget all queues share.", limit},
		{"counter", "derp_verify_admitted_total", "Clients admitted (by a check, or unverified when none is set).", v.Admitted},
		{"counter", "derp_verify_refused_total", "Clients refused by client verification.", v.Refused},
		{"counter", "derp_verify_unverified_total", "Clients admitted with no check configured.", v.Unverified},
		{"counter", "derp_verify_fail_open_total", "Clients admitted because the admission URL was unreachable.", v.FailOpen},
	})
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
