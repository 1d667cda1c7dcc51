package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"
)

// Prefs is the part of ipn.Prefs edgerelay reads (tailscale.com v1.102.0 names).
type Prefs struct {
	AdvertiseRoutes []netip.Prefix
	// RelayServerPort is the peer relay's UDP port (tailscaled 1.86+); nil: off, 0: any.
	RelayServerPort *uint16
	// RelayServerStaticEndpoints are extra ip:port candidates the peer relay offers
	// (tailscaled 1.92+).
	RelayServerStaticEndpoints []netip.AddrPort
}

// Edit is an ipn.MaskedPrefs: only the fields whose …Set flag is true change; a set field
// left empty clears the pref.
type Edit struct {
	AdvertiseRoutesSet            bool
	AdvertiseRoutes               []netip.Prefix
	RelayServerPortSet            bool
	RelayServerPort               *uint16
	RelayServerStaticEndpointsSet bool
	RelayServerStaticEndpoints    []netip.AddrPort
}

// Status is the part of ipnstate.Status edgerelay reads.
type Status struct {
	Version      string // e.g. 1.102.0-t…
	BackendState string
	Self         *struct {
		PublicKey    string
		TailscaleIPs []netip.Addr
	}
	_ [0]func() // not comparable: no generated equality function in the binary
}

// Prefs returns tailscaled's current prefs.
func (c *Client) Prefs(ctx context.Context) (Prefs, error) {
	b, err := c.Do(ctx, http.MethodGet, "/localapi/v0/prefs", nil, nil)
	if err != nil {
		return Prefs{}, err
	}
	return ParsePrefs(b)
}

// EditPrefs applies a masked edit and returns the prefs tailscaled has afterwards: a field
// this tailscaled does not know is silently ignored by it, so callers compare.
func (c *Client) EditPrefs(ctx context.Context, e Edit) (Prefs, error) {
	if e.AdvertiseRoutesSet && e.AdvertiseRoutes == nil {
		e.AdvertiseRoutes = []netip.Prefix{}
	}
	b, err := c.Do(ctx, http.MethodPatch, "/localapi/v0/prefs", e, nil)
	if err != nil {
		return Prefs{}, err
	}
	return ParsePrefs(b)
}

// ParsePrefs reads the fields of Prefs out of tailscaled's prefs JSON and checks them.
func ParsePrefs(b []byte) (Prefs, error) {
	var p Prefs
	if err := json.Unmarshal(b, &p); err != nil {
		return Prefs{}, fmt.Errorf("tailscaled prefs: bad JSON: %w", err)
	}
	for _, r := range p.AdvertiseRoutes {
		if !r.IsValid() {
			return Prefs{}, fmt.Errorf("tailscaled prefs: invalid route %v in AdvertiseRoutes", r)
		}
	}
	return p, nil
}

// Status returns tailscaled's status without peers.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	_, err := c.Do(ctx, http.MethodGet, "/localapi/v0/status?peers=false", nil, &s)
	return s, err
}

// notify is the part of ipn.Notify read from the IPN bus.
type notify struct {
	ErrMessage *string
	Prefs      json.RawMessage // a PrefsView: the prefs' JSON, or null
}

// FollowPrefs follows tailscaled's IPN bus until ctx ends: f gets the current prefs at
// once, then each change. When the stream breaks (tailscaled stopped or restarting) or
// tailscaled is not there, f hears why (with zero Prefs), and the watch starts again after
// a backoff of 1 s doubling to 30 s, beginning with the current prefs.
func (c *Client) FollowPrefs(ctx context.Context, f func(Prefs, error)) {
	const path = "/localapi/v0/watch-ipn-bus?mask=4" // ipn.NotifyInitialPrefs; changes come anyway
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		resp, err := c.request(ctx, http.MethodGet, path, nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			err = statusError(http.MethodGet, path, resp.Status, b)
		}
		if err == nil {
			// One JSON object per notification.
			dec := json.NewDecoder(resp.Body)
			for err == nil && ctx.Err() == nil {
				var n notify
				var p Prefs
				switch err = dec.Decode(&n); {
				case ctx.Err() != nil:
				case err != nil: // io.EOF: tailscaled closed it
					err = fmt.Errorf("tailscaled IPN bus at %s ended (stopped or restarting?): %w", c.Where(), err)
				case n.ErrMessage != nil:
					err = errors.New("tailscaled IPN bus: " + *n.ErrMessage)
				case len(n.Prefs) == 0 || string(n.Prefs) == "null":
				default:
					if p, err = ParsePrefs(n.Prefs); err == nil {
						f(p, nil)
					}
				}
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		f(Prefs{}, err) // never nil: only ctx ends a watch without an error
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
