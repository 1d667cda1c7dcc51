package derp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
)

// Key is a Curve25519 public key: a client's node key or the server's key.
type Key [keyLen]byte

// String is the node-key text form used in logs, JSON and admission requests.
func (k Key) String() string { return "nodekey:" + hex.EncodeToString(k[:]) }

// HexString is the untyped 64-hex form used in Derp-Public-Key and the meta cert.
func (k Key) HexString() string { return hex.EncodeToString(k[:]) }

// ParseKey reads "nodekey:<64 hex>" or bare 64 hex.
func ParseKey(s string) (Key, error) {
	var k Key
	h := strings.TrimPrefix(strings.TrimSpace(s), "nodekey:")
	if len(h) != 2*keyLen {
		return k, fmt.Errorf("key %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return k, fmt.Errorf("key %q: %w", s, err)
	}
	return k, nil
}

// PrivateKey is the server's Curve25519 private key.
type PrivateKey [keyLen]byte

// NewPrivateKey returns a random, clamped private key.
func NewPrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, err
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public returns the public key.
func (k PrivateKey) Public() Key {
	var pub Key
	curve25519.ScalarBaseMult((*[32]byte)(&pub), (*[32]byte)(&k))
	return pub
}

// MarshalText writes derper's "privkey:<hex>" form, so key files move between the two.
func (k PrivateKey) MarshalText() ([]byte, error) {
	return []byte("privkey:" + hex.EncodeToString(k[:])), nil
}

// UnmarshalText reads "privkey:<hex>".
func (k *PrivateKey) UnmarshalText(b []byte) error {
	h, ok := strings.CutPrefix(string(b), "privkey:")
	if !ok || len(h) != 2*keyLen {
		return errors.New("private key: want privkey: followed by 64 hex digits")
	}
	_, err := hex.Decode(k[:], []byte(h))
	return err
}

// sealTo boxes msg from the server to peer: nonce(24) || box.
func (k PrivateKey) sealTo(peer Key, msg []byte) ([]byte, error) {
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	return box.Seal(nonce[:], msg, &nonce, (*[32]byte)(&peer), (*[32]byte)(&k)), nil
}

// openFrom opens nonce(24) || box sent by peer.
func (k PrivateKey) openFrom(peer Key, sealed []byte) ([]byte, bool) {
	if len(sealed) < nonceLen {
		return nil, false
	}
	var nonce [nonceLen]byte
	copy(nonce[:], sealed)
	return box.Open(nil, sealed[nonceLen:], &nonce, (*[32]byte)(&peer), (*[32]byte)(&k))
}
