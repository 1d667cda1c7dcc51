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

// LoadOrCreateKey reads the server key from path, creating it (0600, atomically) on first start.
func LoadOrCreateKey(path string) (derp.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		var kf keyFile
		if err := json.Unmarshal(b, &kf); err != nil {
			return kf.PrivateKey, fmt.Errorf("server key %s: %w", path, err)
		}
		return kf.PrivateKey, nil
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
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return k, fmt.Errorf("server key: %w", err)
	}
	return k, nil
}
