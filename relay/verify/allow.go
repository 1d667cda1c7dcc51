package verify

import (
	"context"
	"fmt"
	"net/netip"
)

const checkAllow = "allow"

// allowList admits the node keys listed in relay.verify_clients.allow.
type allowList struct {
	keys map[string]struct{} // canonical nodekey: form (lowercase hex)
}

func newAllowList(list []string) (*allowList, error) {
	a := &allowList{keys: make(map[string]struct{}, len(list))}
	for i, s := range list {
		k, err := ParseNodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("verify: relay.verify_clients.allow[%d]: %w", i, err)
		}
		a.keys[NodeKeyString(k)] = struct{}{}
	}
	return a, nil
}

func (a *allowList) name() string { return checkAllow }

func (a *allowList) ask(_ context.Context, key string, _ netip.Addr) verdict {
	if _, ok := a.keys[key]; ok {
		return verdict{yes: true}
	}
	return verdict{reason: ErrNotListed}
}

func (a *allowList) preflight(context.Context) error { return nil }
