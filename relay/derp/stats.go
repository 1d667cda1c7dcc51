package derp

import "sync/atomic"

// Drop reasons, named as derper names them so dashboards carry over.
const (
	dropUnknownDest      = iota // no client with that key here or in the mesh
	dropUnknownDestOnFwd        // a mesh peer forwarded to a key we do not have
	dropGoneDisconnected        // the destination was closing
	dropQueueHead               // queue full: the oldest packet made room
	dropQueueTail               // queue full even after head drops: the new packet
	dropWriteError              // the destination's socket failed
	dropQueueBytes              // the receiver's byte budget was spent (this or an older packet)
	dropTotalQueueBytes         // the server's byte budget for all queues was spent
	numDropReasons
)

// DropReasonNames are the metric labels of the drop reasons, by index.
var DropReasonNames = [numDropReasons]string{
	"unknown_dest", "unknown_dest_on_fwd", "gone_disconnected", "queue_head", "queue_tail", "write_error",
	"queue_bytes", "total_queue_bytes",
}

// Stats are the server's counters, read with atomic loads at any time.
type Stats struct {
	Accepts             atomic.Int64 // connections that completed the handshake
	CurrentConns        atomic.Int64
	CurrentHome         atomic.Int64 // connections that said this is their home region
	DupKeys             atomic.Int64 // keys with more than one connection now
	DupEvicted          atomic.Int64 // connections closed because their key had MaxConnsPerKey newer ones
	PacketsRecv         atomic.Int64 // packets clients sent us
	BytesRecv           atomic.Int64
	PacketsSent         atomic.Int64 // packets written to clients
	DirectWrites        atomic.Int64 // of those, written by the sender's reader itself (direct.go)
	DirectLeftovers     atomic.Int64 // direct writes the socket did not take whole: the sender finished them
	BytesSent           atomic.Int64
	PacketsForwardedOut atomic.Int64
	PacketsForwardedIn  atomic.Int64
	PacketsDropped      [numDropReasons]atomic.Int64
	BytesDropped        [numDropReasons]atomic.Int64
	DiscoPacketsRecv    atomic.Int64
	GotPing             atomic.Int64
	SentPong            atomic.Int64
	PeerGoneDisconnect  atomic.Int64 // PeerGone(Disconnected) frames sent
	PeerGoneNotHere     atomic.Int64 // PeerGone(NotHere) frames sent
	HomeMovesIn         atomic.Int64
	HomeMovesOut        atomic.Int64
	WriteTimeouts       atomic.Int64
	HandshakeFailures   atomic.Int64
	Rejected            atomic.Int64 // refused by client verification
	RejectedFull        atomic.Int64 // refused after the handshake: MaxClients non-mesh clients connected
	Watchers            atomic.Int64
	WebSocketAccepts    atomic.Int64
	FastStarts          atomic.Int64 // upgrades without a 101 (client read our key from the meta cert)
	IdleParked          atomic.Int64 // idle clients now waiting with no goroutine (idlewatch_linux.go)
}

func (s *Stats) drop(reason int, n int) {
	s.PacketsDropped[reason].Add(1)
	s.BytesDropped[reason].Add(int64(n))
}
