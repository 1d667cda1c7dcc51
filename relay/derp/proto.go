// Package derp implements the server side of Tailscale's DERP relay protocol (version 2):
// the handshake, frame handling, the client registry with duplicate-key and mesh-watcher
// semantics, per-client queues and the HTTP/WebSocket upgrade. It is written from the
// protocol description and tested against Tailscale's own client code.
package derp

import "time"

// Protocol constants. Every number the wire format depends on lives here.
const (
	// ProtocolVersion is the DERP version spoken; clients send it in ClientInfo.
	ProtocolVersion = 2

	// magic starts the ServerKey frame: "DERP🔑".
	magic = "DERP\xf0\x9f\x94\x91"

	keyLen         = 32
	nonceLen       = 24
	frameHeaderLen = 1 + 4 // type + big-endian uint32 length

	// MaxPacketSize is the largest packet a client may relay (excluding keys).
	MaxPacketSize = 64 << 10
	// maxClientInfoLen bounds the sealed ClientInfo frame. Real clients send under 200 bytes
	// (key, nonce, a box around a few JSON fields); derper allows 256 KiB, which let any
	// unauthenticated peer make us allocate that much per connection.
	maxClientInfoLen = 4 << 10
	// minClientInfoLen is the smallest possible ClientInfo frame: key + nonce.
	minClientInfoLen = keyLen + nonceLen
	// maxPingLen bounds a Ping body; only the first 8 bytes are echoed.
	maxPingLen = 1000
	// maxUnknownFrameLen bounds frames of types we skip, so a peer cannot make us read forever
	// into the void with a 4 GiB length. Clients never send more than ~64 KiB frames.
	maxUnknownFrameLen = 1 << 20

	// peerPresentLen is key(32) + IP(16) + port(2) + flags(1).
	peerPresentLen = keyLen + 16 + 2 + 1
)

// Frame types.
const (
	frameServerKey     = 0x01 // S→C: magic + server public key
	frameClientInfo    = 0x02 // C→S: client key + nonce + box(JSON ClientInfo)
	frameServerInfo    = 0x03 // S→C: nonce + box(JSON ServerInfo)
	frameSendPacket    = 0x04 // C→S: dst key + packet
	frameRecvPacket    = 0x05 // S→C: src key + packet (v2 layout)
	frameKeepAlive     = 0x06 // S→C: empty
	frameNotePreferred = 0x07 // C→S: 1 byte, 1 if this is the client's home region
	framePeerGone      = 0x08 // S→C: peer key + reason byte
	framePeerPresent   = 0x09 // S→C (watchers): key + IP + port + flags
	frameForwardPacket = 0x0a // mesh C→S: src key + dst key + packet
	frameWatchConns    = 0x10 // mesh C→S: empty; subscribe to PeerPresent/PeerGone
	frameClosePeer     = 0x11 // mesh C→S: key whose connections to close
	framePing          = 0x12 // C→S: 8 bytes
	framePong          = 0x13 // S→C: the ping's 8 bytes
	frameHealth        = 0x14 // S→C: UTF-8 problem text, empty when healthy
	frameRestarting    = 0x15 // S→C: reconnectIn ms + tryFor ms (uint32 BE each)
)

// PeerGone reasons.
const (
	PeerGoneDisconnected = 0x00 // the peer's last connection closed
	PeerGoneNotHere      = 0x01 // the server does not know the destination
)

// PeerPresent flags.
const (
	peerPresentIsRegular  = 0x01
	peerPresentIsMeshPeer = 0x02
	peerPresentIsProber   = 0x04
	peerPresentNotIdeal   = 0x08
)

// Timing and size defaults (overridable through Options).
const (
	defaultKeepAlive        = 60 * time.Second // clients time out after 120 s of silence
	defaultWriteTimeout     = 2 * time.Second
	meshWriteTimeout        = 30 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
	defaultQueueDepth       = 32
	defaultMaxConnsPerKey   = 4
)

// discoMagic starts every disco (path discovery) packet; those get their own queue so control
// traffic survives bulk data, and trigger PeerGone(NotHere) on unknown destinations.
const (
	discoMagic     = "TS\xf0\x9f\x92\xac"
	discoHeaderLen = len(discoMagic) + keyLen + nonceLen
)

func looksLikeDisco(p []byte) bool {
	return len(p) >= discoHeaderLen && string(p[:len(discoMagic)]) == discoMagic
}
