package derp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// clientInfo is the JSON a client seals into its ClientInfo frame (our mesh client sends it).
type clientInfo struct {
	// MeshKey is the region's shared mesh key (64 hex) when the client is a mesh peer.
	MeshKey     string `json:"meshKey,omitempty"`
	Version     int    `json:"version,omitempty"`
	CanAckPings bool   `json:"CanAckPings"`
	IsProber    bool   `json:"IsProber,omitempty"`
	AppName     string `json:"AppName,omitempty"`
}

// hello is what the server keeps of a ClientInfo: the client's key and the two fields used
// after the handshake. Everything else (AppName, …) is skipped by the decoder, never stored,
// so a client cannot park memory in its ClientInfo for the life of its connection.
type hello struct {
	key      Key
	meshKey  MeshKey // zero when the client sent none
	isProber bool
}

// helloJSON is the part of the ClientInfo JSON the server decodes.
type helloJSON struct {
	MeshKey  string `json:"meshKey"`
	IsProber bool   `json:"IsProber"`
}

// serverInfo is the JSON the server seals into its ServerInfo frame.
type serverInfo struct {
	Version int `json:"version,omitempty"`
	// TokenBucketBytesPerSecond and TokenBucketBytesBurst, when set, make clients rate-limit
	// their own sends to what the server will accept.
	TokenBucketBytesPerSecond int `json:",omitempty"`
	TokenBucketBytesBurst     int `json:",omitempty"`
}

// writeServerKey sends the first frame: magic + the server's public key.
func writeServerKey(bw *bufio.Writer, pub Key) error {
	if err := writeFrame(bw, frameServerKey, []byte(magic), pub[:]); err != nil {
		return err
	}
	return bw.Flush()
}

// readClientInfo reads and opens the ClientInfo frame, which must come first. The length
// is checked before anything is allocated for the frame, and the buffer grows only with the
// bytes that actually arrive: an unauthenticated peer cannot make us hold more than
// maxClientInfoLen, and only by sending it.
func readClientInfo(br *bufio.Reader, priv PrivateKey) (hello, error) {
	typ, n, err := readFrameHeader(br)
	if err != nil {
		return hello{}, fmt.Errorf("reading ClientInfo: %w", err)
	}
	if typ != frameClientInfo {
		return hello{}, fmt.Errorf("first frame is type 0x%02x, want ClientInfo (0x%02x)", typ, frameClientInfo)
	}
	if n < minClientInfoLen || n > maxClientInfoLen {
		return hello{}, fmt.Errorf("ClientInfo length %d outside %d..%d", n, minClientInfoLen, maxClientInfoLen)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, br, int64(n)); err != nil {
		return hello{}, fmt.Errorf("reading ClientInfo: %w", err)
	}
	return parseClientInfo(buf.Bytes(), priv)
}

// parseClientInfo decodes a ClientInfo payload: client key, then a box sealed to us.
func parseClientInfo(buf []byte, priv PrivateKey) (hello, error) {
	var h hello
	if len(buf) < minClientInfoLen {
		return h, errors.New("ClientInfo too short")
	}
	copy(h.key[:], buf[:keyLen])
	msg, ok := priv.openFrom(h.key, buf[keyLen:])
	if !ok {
		return h, fmt.Errorf("ClientInfo from %v: box does not open", h.key)
	}
	var info helloJSON
	if err := json.Unmarshal(msg, &info); err != nil {
		return h, fmt.Errorf("ClientInfo from %v: %w", h.key, err)
	}
	if info.MeshKey != "" {
		k, err := parseMeshKey(info.MeshKey)
		if err != nil {
			return h, fmt.Errorf("ClientInfo from %v: meshKey: %w", h.key, err)
		}
		h.meshKey = k
	}
	h.isProber = info.IsProber
	return h, nil
}

// writeServerInfo seals and sends ServerInfo, the first frame after ServerKey.
func writeServerInfo(bw *bufio.Writer, priv PrivateKey, client Key, info serverInfo) error {
	msg, err := json.Marshal(info)
	if err != nil {
		return err
	}
	sealed, err := priv.sealTo(client, msg)
	if err != nil {
		return err
	}
	if err := writeFrame(bw, frameServerInfo, sealed); err != nil {
		return err
	}
	return bw.Flush()
}

// The client side, for our mesh links.

// readServerKey reads the first DERP frame: magic, the server's key, maybe future bytes.
func readServerKey(br *bufio.Reader) (Key, error) {
	var k Key
	typ, n, err := readFrameHeader(br)
	if err != nil {
		return k, fmt.Errorf("reading ServerKey: %w", err)
	}
	if typ != frameServerKey {
		return k, fmt.Errorf("first frame is type 0x%02x, want ServerKey (0x%02x)", typ, frameServerKey)
	}
	if n < uint32(len(magic)+keyLen) || n > maxServerKeyLen {
		return k, fmt.Errorf("ServerKey length %d outside %d..%d", n, len(magic)+keyLen, maxServerKeyLen)
	}
	var b [len(magic) + keyLen]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return k, fmt.Errorf("reading ServerKey: %w", err)
	}
	if string(b[:len(magic)]) != magic {
		return k, errors.New("ServerKey frame without the DERP magic")
	}
	copy(k[:], b[len(magic):])
	return k, discard(br, n-uint32(len(b)))
}

// readServerInfo reads and opens the ServerInfo frame, which must follow ClientInfo.
func readServerInfo(br *bufio.Reader, priv PrivateKey, serverKey Key) (*serverInfo, error) {
	typ, n, err := readFrameHeader(br)
	if err != nil {
		return nil, fmt.Errorf("reading ServerInfo: %w", err)
	}
	if typ != frameServerInfo {
		return nil, fmt.Errorf("frame type 0x%02x after ClientInfo, want ServerInfo (0x%02x)", typ, frameServerInfo)
	}
	if n < nonceLen || n > maxServerInfoLen {
		return nil, fmt.Errorf("ServerInfo length %d outside %d..%d", n, nonceLen, maxServerInfoLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, fmt.Errorf("reading ServerInfo: %w", err)
	}
	msg, ok := priv.openFrom(serverKey, buf)
	if !ok {
		return nil, errors.New("ServerInfo box does not open")
	}
	info := new(serverInfo)
	if err := json.Unmarshal(msg, info); err != nil {
		return nil, fmt.Errorf("ServerInfo: %w", err)
	}
	return info, nil
}
