package derp

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// MeshKey is the secret shared by the relays of one region; holders may forward packets and
// watch connections.
type MeshKey [32]byte

func parseMeshKey(s string) (MeshKey, error) {
	var k MeshKey
	s = strings.TrimSpace(s)
	if len(s) != 64 {
		return k, fmt.Errorf("want 64 hex digits, got %d characters", len(s))
	}
	_, err := hex.Decode(k[:], []byte(s))
	return k, err
}

// ParseMeshKey reads a mesh key file's contents (64 hex, whitespace trimmed).
func ParseMeshKey(s string) (MeshKey, error) { return parseMeshKey(s) }

// equal compares in constant time; the zero key never matches.
func (k MeshKey) equal(other MeshKey) bool {
	var zero MeshKey
	return k != zero && subtle.ConstantTimeCompare(k[:], other[:]) == 1
}

// String returns the hex form (for ClientInfo when we dial peers).
func (k MeshKey) String() string { return hex.EncodeToString(k[:]) }
