package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgerelay/edgerelay/agent/localapi"
)

const checkTailscaled = "tailscaled"

// capabilityVersion is sent as Tailscale-Cap, as tailscale.com v1.102.0's LocalAPI client
// does (tailcfg.CurrentCapabilityVersion). tailscaled uses it only for compatibility
// decisions; whois answers do not depend on it.
const capabilityVersion = 142

// whoisBodyLimit bounds a whois answer: a node with its capability map is a few KiB.
const whoisBodyLimit = 1 << 20

// DefaultTailscaledSockets are where tailscaled puts its LocalAPI socket (localapi's list);
// a verifier without a configured check looks at them in this order.
var DefaultTailscaledSockets = localapi.DefaultSockets

// tailscaled asks the local tailscaled, over its LocalAPI unix socket, whether a node key
// belongs to a node in its netmap (itself or a peer): what derper --verify-clients does.
// Found automatically (auto), it is looked for at each of sockets on every connection, so a
// tailscaled that starts after us, restarts, or moves is picked up without a restart.
type tailscaled struct {
	api     *localapi.Client // finds the socket; whois keeps its own connections
	client  *http.Client
	timeout time.Duration
}

func newTailscaled(sockets []string, auto bool, o options) *tailscaled {
	t := &tailscaled{api: localapi.Find(sockets...), timeout: o.timeout}
	t.api.Auto = auto
	tr := &http.Transport{
		// The URL's host is a placeholder; every connection goes to a socket.
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return t.api.Dial(ctx) },
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	t.client = &http.Client{Transport: tr, Timeout: o.timeout}
	return t
}

func (t *tailscaled) socket() string { return t.api.Socket() }
func (t *tailscaled) where() string  { return t.api.Where() }

func (t *tailscaled) name() string { return checkTailscaled }

func (t *tailscaled) ask(ctx context.Context, key string, _ netip.Addr) verdict {
	name, err := t.whois(ctx, key)
	switch {
	case err == nil:
		return verdict{yes: true, detail: name}
	case errors.Is(err, ErrNotInNetmap):
		return verdict{reason: err}
	default:
		return verdict{failed: true, reason: err}
	}
}

// preflight looks up a key no node has: a nodekey-capable tailscaled answers 404.
func (t *tailscaled) preflight(ctx context.Context) error {
	var probe [32]byte
	probe[0] = 1 // not the zero key, which some versions may treat specially
	_, err := t.whois(ctx, NodeKeyString(probe))
	if err == nil || errors.Is(err, ErrNotInNetmap) {
		return nil
	}
	return err
}

// whois asks tailscaled about key. It returns the node's name on 200, an error wrapping
// ErrNotInNetmap on 404, and an error naming the socket for everything else.
func (t *tailscaled) whois(ctx context.Context, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://local-tailscaled.sock/localapi/v0/whois?addr="+url.QueryEscape(key), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Tailscale-Cap", strconv.Itoa(capabilityVersion))
	res, err := t.client.Do(req)
	if err != nil {
		return "", t.transportError(err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		name, err := parseWhoIs(io.LimitReader(res.Body, whoisBodyLimit), key)
		if err != nil {
			return "", fmt.Errorf("whois answer from %s: %w", t.where(), err)
		}
		return name, nil
	case http.StatusNotFound:
		return "", ErrNotInNetmap
	}
	body := snippet(res.Body)
	switch {
	case res.StatusCode == http.StatusBadRequest && strings.Contains(body, "invalid 'addr' parameter"):
		// Before whois by node key, tailscaled parsed addr as ip:port only (tailscale#12617).
		return "", fmt.Errorf("%w (socket %s)", ErrTailscaledTooOld, t.where())
	case res.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("tailscaled at %s denied whois (%q): run edgerelay as root or as tailscaled's operator user", t.where(), body)
	}
	return "", fmt.Errorf("tailscaled at %s answered whois with %s: %q", t.where(), res.Status, body)
}

func (t *tailscaled) transportError(err error) error {
	if t.api.Auto && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTSOCK)) {
		return fmt.Errorf("%w: no tailscaled answers at %s (the usual socket paths; no client check is configured)", ErrNoTailscaled, t.where())
	}
	sock := t.api.Sockets[0]
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w: socket %s does not exist (is tailscaled running, and is relay.verify_clients.tailscaled_socket its --socket path?)", ErrNoTailscaled, sock)
	case errors.Is(err, syscall.ECONNREFUSED):
		if fi, serr := os.Stat(sock); serr == nil && fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%w: %s is not a unix socket", ErrNoTailscaled, sock)
		}
		return fmt.Errorf("%w: nothing listens on socket %s (is tailscaled running?)", ErrNoTailscaled, sock)
	case errors.Is(err, syscall.ENOTSOCK):
		return fmt.Errorf("%w: %s is not a unix socket", ErrNoTailscaled, sock)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("no permission to open tailscaled socket %s (run edgerelay as root)", t.where())
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("tailscaled at %s did not answer whois within %v", t.where(), t.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the placeholder URL
	}
	return fmt.Errorf("asking tailscaled at %s: %w", t.where(), err)
}

// parseWhoIs checks a LocalAPI whois answer (apitype.WhoIsResponse) is about key and returns
// the node's name.
func parseWhoIs(r io.Reader, key string) (string, error) {
	var res struct {
		Node *struct {
			Key  string
			Name string
		}
	}
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return "", fmt.Errorf("not a whois JSON object: %w", err)
	}
	if res.Node == nil {
		return "", errors.New("no Node in the whois answer")
	}
	if !strings.EqualFold(res.Node.Key, key) {
		return "", fmt.Errorf("whois answered for node key %q, asked about %s", trim(res.Node.Key, 80), key)
	}
	return res.Node.Name, nil
}

// snippet reads the start of an error body for a message.
func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return trim(strings.TrimSpace(string(b)), 200)
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (t *tailscaled) closeIdle() { t.client.CloseIdleConnections() }
