package relay

import (
	"crypto/tls"
	"time"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/stun"
	"github.com/edgerelay/edgerelay/relay/verify"
)

// Status is the relay's part of `edgerelay status`.
type Status struct {
	ServerKey     string                `json:"server_key"`
	Listen        string                `json:"listen"`
	STUNListen    string                `json:"stun_listen,omitempty"`
	TLSMode       string                `json:"tls_mode"`
	CertNotAfter  time.Time             `json:"cert_not_after,omitzero"`
	CertPin       string                `json:"cert_pin,omitempty"`
	Clients       int64                 `json:"clients"`
	HomeClients   int64                 `json:"home_clients"`
	Accepted      int64                 `json:"connections_accepted"`
	Pending       int64                 `json:"connections_pending"`       // not yet authenticated, now
	RejectedRate  int64                 `json:"connections_rejected_rate"` // over the global or per-source rate
	RejectedBusy  int64                 `json:"connections_rejected_pending"`
	Evicted       int64                 `json:"connections_evicted"`       // pending ones closed: room for a newcomer, or too old
	RejectedFull  int64                 `json:"connections_rejected_full"` // authenticated, but max_clients reached
	DupClosed     int64                 `json:"duplicate_connections_closed"`
	Refused       int64                 `json:"clients_refused"` // by client verification
	PacketsIn     int64                 `json:"packets_received"`
	BytesIn       int64                 `json:"bytes_received"`
	PacketsOut    int64                 `json:"packets_sent"`
	BytesOut      int64                 `json:"bytes_sent"`
	Dropped       map[string]int64      `json:"packets_dropped,omitempty"` // by reason
	QueuedBytes   int64                 `json:"queued_bytes"`
	QueueBudget   int64                 `json:"queued_bytes_limit"`
	WriteTimeouts int64                 `json:"write_timeouts"`
	STUN          stun.Stats            `json:"stun"`
	Mesh          []derp.MeshPeerStatus `json:"mesh,omitempty"`
	Verification  verify.Stats          `json:"verification"`
	Admits        string                `json:"admits"` // who client verification lets in
	Warning       string                `json:"warning,omitempty"`
}

// Status snapshots the counters.
func (r *Relay) Status() Status {
	st, ls := r.derp.Stats(), &r.listenStats
	s := Status{
		ServerKey:     r.derp.PublicKey().String(),
		Listen:        r.cfg.Listen,
		STUNListen:    r.cfg.STUNAddr(),
		TLSMode:       r.cfg.TLS.Mode,
		CertPin:       r.pin,
		Clients:       st.CurrentConns.Load(),
		HomeClients:   st.CurrentHome.Load(),
		Accepted:      ls.Accepted.Load(),
		Pending:       ls.Pending.Load(),
		RejectedRate:  ls.RejectedRate.Load() + ls.RejectedSourceRate.Load(),
		RejectedBusy:  ls.RejectedSourcePending.Load() + ls.RejectedPendingFull.Load(),
		Evicted:       ls.Evicted.Load() + ls.Expired.Load(),
		RejectedFull:  st.RejectedFull.Load(),
		DupClosed:     st.DupEvicted.Load(),
		Refused:       st.Rejected.Load(),
		PacketsIn:     st.PacketsRecv.Load(),
		BytesIn:       st.BytesRecv.Load(),
		PacketsOut:    st.PacketsSent.Load(),
		BytesOut:      st.BytesSent.Load(),
		WriteTimeouts: st.WriteTimeouts.Load(),
		STUN:          r.STUNStats(),
		Mesh:          r.derp.MeshPeers(),
		Verification:  r.verify.Stats(),
		Admits:        r.verify.Describe(),
		Warning:       r.verify.Warning(),
	}
	if a := r.Addr(); a != nil {
		s.Listen = a.String()
	}
	s.QueuedBytes, s.QueueBudget = r.derp.QueuedBytes()
	for i, name := range derp.DropReasonNames {
		if n := st.PacketsDropped[i].Load(); n > 0 {
			if s.Dropped == nil {
				s.Dropped = map[string]int64{}
			}
			s.Dropped[name] = n
		}
	}
	if c, err := r.certs.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		if leaf := Leaf(c); leaf != nil {
			s.CertNotAfter = leaf.NotAfter
		}
	}
	return s
}

// Warning is what status shows about who may use the relay: set when it admits anyone
// (open on a reachable listener) or refuses everyone (no check that can answer).
func (r *Relay) Warning() string { return r.verify.Warning() }
