package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"github.com/edgerelay/edgerelay/relay/derp"
)

// keyFile is the server key's file format, the same as derper's, so a key moves between the
// two and clients keep their pinned server key.
type keyFile struct {
	PrivateKey derp.PrivateKey
}

// LoadOrCreateKey reads the server key from path, creating it (0600, atomically) on first
// start. A file that exists but holds no usable key ({}, null, a zero key) is an error, never
// replaced: clients pin the server key, and an all-zero private key's public key is known
// to anyone.
func LoadOrCreateKey(path string) (derp.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return parseKeyFile(path, b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return derp.PrivateKey{}, fmt.Errorf("server key: %w", err)
	}
	k, err := derp.NewPrivateKey()
	if err != nil {
		return k, err
	}
	b, err = json.MarshalIndent(keyFile{PrivateKey: k}, "", "\t")
	if err != nil {
		return k, err
	}
	if err := atomicfile.WriteNew(path, b, 0o600); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey(path) // created meanwhile (another process): use that one
	} else if err != nil {
		return k, fmt.Errorf("server key: %w", err)
	}
	return k, nil
}

func parseKeyFile(path string, b []byte) (derp.PrivateKey, error) {
	var kf *keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return derp.PrivateKey{}, fmt.Errorf("server key %s: %w (fix or remove the file; removing it makes a new key that clients must learn)", path, err)
	}
	if kf == nil || kf.PrivateKey == (derp.PrivateKey{}) {
		return derp.PrivateKey{}, fmt.Errorf("server key %s: no private key in it (want {\"PrivateKey\": \"privkey:<64 hex>\"}); "+
			"restore it or remove the file to make a new key that clients must learn", path)
	}
	return kf.PrivateKey, nil
}
