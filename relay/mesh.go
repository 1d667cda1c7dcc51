package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	"github.com/edgerelay/edgerelay/relay/derp"
	"github.com/edgerelay/edgerelay/relay/pin"
)

// startMesh connects to every configured mesh peer until ctx ends. Each link reconnects
// with backoff on its own; a peer that is down never affects local relaying.
func (r *Relay) startMesh(ctx context.Context, wg *sync.WaitGroup) error {
	if len(r.cfg.Mesh.Peers) == 0 {
		return nil
	}
	for i, p := range r.cfg.Mesh.Peers {
		peerPin := ""
		if i < len(r.cfg.Mesh.Pins) {
			peerPin = r.cfg.Mesh.Pins[i]
		}
		tlsCfg, err := meshTLSConfig(r.cfg.Mesh.CAFile, peerPin)
		if err != nil {
			return err
		}
		u, err := derp.MeshPeerURL(p, portOf(r.cfg.Listen, 443))
		if err != nil {
			return fmt.Errorf("relay.mesh.peers: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.derp.RunMeshClient(ctx, u, tlsCfg); err != nil {
				r.log.Error("mesh link stopped", "peer", u, "err", err)
			}
		}()
	}
	return nil
}

// meshTLSConfig trusts a peer by its pin (self-signed relays) or by the system roots plus
// caFile.
func meshTLSConfig(caFile, peerPin string) (*tls.Config, error) {
	cfg := &tls.Config{}
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("relay.mesh.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("relay.mesh.ca_file %s: no PEM certificates", caFile)
		}
		cfg.RootCAs = pool
	}
	if peerPin != "" {
		pin.Trust(cfg, peerPin)
	}
	return cfg, nil
}
