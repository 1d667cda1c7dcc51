package netfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/edgerelay/edgerelay/agent/localapi"
)

// localAPI is the local tailscaled at subnet.tailscaled_socket; its errors name that key
// when tailscaled cannot be reached.
type localAPI struct{ *localapi.Client }

func newLocalAPI(socket string) localAPI { return localAPI{localapi.New(socket)} }

func (c localAPI) named(err error) error {
	var se *localapi.StatusError
	if err == nil || errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("%w (subnet.tailscaled_socket)", err)
}

func (c localAPI) prefs(ctx context.Context) (localapi.Prefs, error) {
	p, err := c.Prefs(ctx)
	return p, c.named(err)
}

// setRoutes replaces AdvertiseRoutes.
func (c localAPI) setRoutes(ctx context.Context, routes []netip.Prefix) (localapi.Prefs, error) {
	p, err := c.EditPrefs(ctx, localapi.Edit{AdvertiseRoutesSet: true, AdvertiseRoutes: routes})
	return p, c.named(err)
}

func (c localAPI) self(ctx context.Context) (localapi.Status, error) {
	s, err := c.Status(ctx)
	return s, c.named(err)
}
