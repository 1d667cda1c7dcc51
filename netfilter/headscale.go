package netfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/localapi"
)

// headscaleNode is the part of headscale's v1 node JSON (grpc-gateway, camelCase) we read.
type headscaleNode struct {
	ID             json.Number `json:"id"` // uint64, sent as a string
	NodeKey        string      `json:"nodeKey"`
	IPAddresses    []string    `json:"ipAddresses"`
	ApprovedRoutes []string    `json:"approvedRoutes"`
}

// parseHeadscaleNodes reads GET /api/v1/node.
func parseHeadscaleNodes(b []byte) ([]headscaleNode, error) {
	var resp struct {
		Nodes []headscaleNode `json:"nodes"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("headscale: bad node list JSON: %w", err)
	}
	for _, n := range resp.Nodes {
		if _, err := n.ID.Int64(); err != nil {
			return nil, fmt.Errorf("headscale: node id %q is not a number", n.ID)
		}
	}
	return resp.Nodes, nil
}

// approveRoutes makes headscale's approved set for this node hold want: approve_routes
// replaces the whole set, so merge with what is approved, dropping only routes the agent
// approved before.
func (r *Reconciler) approveRoutes(ctx context.Context, api *localapi.Client, st *state, want []netip.Prefix) error {
	hs := r.cfg.Headscale
	key := hs.APIKey
	if key == "" {
		return fmt.Errorf("subnet.headscale.api_key_file: no API key (create one with `headscale apikeys create`)")
	}
	self, err := api.Status(ctx)
	if err != nil {
		return err
	}
	if self.Self == nil || self.Self.PublicKey == "" || self.Self.PublicKey == zeroNodeKey {
		return fmt.Errorf("headscale: tailscaled has no node key yet (state %s): log in first", self.BackendState)
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	return r.approveOn(ctx, hc, strings.TrimSuffix(hs.URL, "/"), key, self.Self.PublicKey, st, want)
}

const zeroNodeKey = "nodekey:0000000000000000000000000000000000000000000000000000000000000000"

// approveOn finds the node by its key on headscale at base and sets its approved routes.
func (r *Reconciler) approveOn(ctx context.Context, hc *http.Client, base, key, nodeKey string, st *state, want []netip.Prefix) error {
	b, err := headscaleDo(ctx, hc, key, http.MethodGet, base+"/api/v1/node", nil)
	if err != nil {
		return err
	}
	nodes, err := parseHeadscaleNodes(b)
	if err != nil {
		return err
	}
	var node *headscaleNode
	for i := range nodes {
		if nodes[i].NodeKey == nodeKey {
			node = &nodes[i]
		}
	}
	if node == nil {
		return fmt.Errorf("headscale at %s: no node with this node's key %s", base, nodeKey)
	}
	current := parsePrefixes(node.ApprovedRoutes)
	next, owned := mergeRoutes(current, parsePrefixes(st.Approved), want)
	if !sameSet(next, current) {
		body, _ := json.Marshal(map[string][]string{"routes": prefixStrings(next)})
		path := base + "/api/v1/node/" + url.PathEscape(node.ID.String()) + "/approve_routes"
		if _, err := headscaleDo(ctx, hc, key, http.MethodPost, path, body); err != nil {
			return err
		}
		r.log.Info("routes approved on headscale", "node", node.ID.String(), "routes", prefixStrings(next))
	}
	st.Approved = prefixStrings(owned)
	return st.save(r.stateDir)
}

func headscaleDo(ctx context.Context, hc *http.Client, key, method, u string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("subnet.headscale.url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("headscale: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("headscale %s %s: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("headscale %s %s: %s: %s", method, req.URL.Path, resp.Status, localapi.ErrorText(b))
	}
	return b, nil
}
