package derp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// clientInfo is the JSON a client seals into its ClientInfo frame.
type clientInfo struct {
	// MeshKey is the region's shared mesh key (64 hex) when the client is a mesh peer.
	MeshKey     string `json:"meshKey,omitempty"`
	Version     int    `json:"version,omitempty"`
	CanAckPings bool   `json:"CanAckPings"`
	IsProber    bool   `json:"IsProber,omitempty"`
	AppName     string `json:"AppName,omitempty"`
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

// readClientInfo reads and opens the ClientInfo frame, which must come first.
func readClientInfo(br *bufio.Reader, priv PrivateKey) (Key, *clientInfo, error) {
	var key Key
	typ, n, err := readFrameHeader(br)
	if err != nil {
		return key, nil, fmt.Errorf("reading ClientInfo: %w", err)
	}
	if typ != frameClientInfo {
		return key, nil, fmt.Errorf("first frame is type 0x%02x, want ClientInfo (0x%02x)", typ, frameClientInfo)
	}
	if n < minClientInfoLen || n > maxClientInfoLen {
		return key, nil, fmt.Errorf("ClientInfo length %d outside %d..%d", n, minClientInfoLen, maxClientInfoLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return key, nil, fmt.Errorf("reading ClientInfo: %w", err)
	}
	info, err := parseClientInfo(buf, priv, &key)
	return key, info, err
}

// parseClientInfo decodes a ClientInfo payload: client key, then a box sealed to us.
func parseClientInfo(buf []byte, priv PrivateKey, key *Key) (*clientInfo, error) {
	if len(buf) < minClientInfoLen {
		return nil, errors.New("ClientInfo too short")
	}
	copy(key[:], buf[:keyLen])
	msg, ok := priv.openFrom(*key, buf[keyLen:])
	if !ok {
		return nil, fmt.Errorf("ClientInfo from %v: box does not open", *key)
	}
	info := new(clientInfo)
	if err := json.Unmarshal(msg, info); err != nil {
		return nil, fmt.Errorf("ClientInfo from %v: %w", *key, err)
	}
	if info.MeshKey != "" {
		if _, err := parseMeshKey(info.MeshKey); err != nil {
			return nil, fmt.Errorf("ClientInfo from %v: meshKey: %w", *key, err)
		}
	}
	return info, nil
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
