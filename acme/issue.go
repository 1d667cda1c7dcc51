package acme

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"
)

// Renew orders a new certificate now, whatever the schedule says, and puts it in service.
// The current certificate keeps serving if it fails. For tests and the CLI.
func (m *Manager) Renew(ctx context.Context) error {
	err := m.obtain(ctx)
	if err == nil {
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
	return err
}

// obtain orders a certificate, stores it and puts it in service. It returns soon after ctx
// ends, with nothing of the order left running; a certificate the CA already issued is
// still kept (the next Manager for these names loads it instead of ordering again).
func (m *Manager) obtain(ctx context.Context) error {
	return m.flow(ctx, func(client *lego.Client) error {
		req, err := m.orderRequest()
		if err != nil {
			return err
		}
		if old := m.Leaf(); old != nil {
			// ARI: tell the CA which certificate this replaces (ignored when it has no ARI).
			if id, err := certificate.MakeARICertID(old); err == nil {
				req.ReplacesCertID = id
			}
		}
		start := time.Now()
		m.log.Info("ordering certificate", "names", m.domains, "directory", m.cfg.Directory, "profile", m.cfg.Profile)
		res, err := client.Certificate.ObtainForCSR(req)
		if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "accountDoesNotExist") {
			// The CA forgot the account (a reset test CA, a deleted account): register again.
			m.log.Warn("the CA does not know the stored account, registering again")
			if rerr := m.forgetAccountLocked(); rerr != nil {
				return rerr
			}
			if client, err = m.clientLocked(); err != nil {
				return err
			}
			res, err = client.Certificate.ObtainForCSR(req)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("order for %s abandoned: %w", strings.Join(m.domains, ", "), ctx.Err())
			}
			return fmt.Errorf("ordering a certificate for %s: %w", strings.Join(m.domains, ", "), err)
		}
		c, err := parseCertFile(append(append([]byte{}, res.Certificate...), res.PrivateKey...))
		if err != nil {
			return fmt.Errorf("certificate from the CA: %w", err)
		}
		if err := m.store.saveCert(m.domains, res.Certificate, res.PrivateKey); err != nil {
			// Serve it anyway; the next start will order again.
			m.log.Warn("cannot store the new certificate", "err", err)
		}
		m.log.Info("certificate obtained", "took", time.Since(start).Round(time.Millisecond))
		m.setCert(c, true)
		return nil
	})
}

// orderRequest is a fresh key and a CSR for the configured names. The order goes through
// lego's ObtainForCSR rather than Obtain: Obtain converts names with golang.org/x/net/idna,
// which links a second copy of the IDNA and Unicode tables next to the standard library's
// (about 57 KB on mipsle), and config validation admits only ASCII names anyway.
func (m *Manager) orderRequest() (certificate.ObtainForCSRRequest, error) {
	key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate key: %w", err)
	}
	cn := m.domains[0]
	if len(cn) > 64 { // the longest common name X.509 allows; the names are in the SAN anyway
		cn = ""
	}
	der, err := certcrypto.GenerateCSR(key, cn, m.domains, false)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return certificate.ObtainForCSRRequest{}, fmt.Errorf("certificate request: %w", err)
	}
	return certificate.ObtainForCSRRequest{CSR: csr, PrivateKey: key, Bundle: true, Profile: m.cfg.Profile}, nil
}
