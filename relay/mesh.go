package relay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/edgerelay/edgerelay/relay/derp"
)

// startMesh connects to every configured mesh peer until ctx ends. Each link reconnects
// with backoff on its own; a peer that is down never affects local relaying.
func (r *Relay) startMesh(ctx context.Context, wg *sync.WaitGroup) error {
	if len(r.cfg.Mesh.Peers) == 0 {
		return nil
	}
	for i, p := range r.cfg.Mesh.Peers {
		pin := ""
		if i < len(r.cfg.Mesh.Pins) {
			pin = r.cfg.Mesh.Pins[i]
		}
		tlsCfg, err := meshTLSConfig(r.cfg.Mesh.CAFile, pin)
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
func meshTLSConfig(caFile, pin string) (*tls.Config, error) {
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
	if pin != "" {
		want := strings.ToLower(strings.TrimPrefix(pin, "sha256-raw:"))
		// The chain is checked by pin instead (as Tailscale clients do for CertName pins);
		// the meta cert carrying the DERP key never matches a pin.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			for _, c := range raw {
				h := sha256.Sum256(c)
				if hex.EncodeToString(h[:]) == want {
					return nil
				}
			}
			return errors.New("mesh peer's certificate does not match its relay.mesh.pins entry")
		}
	}
	return cfg, nil
}
