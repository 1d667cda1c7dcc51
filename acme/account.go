package acme

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/registration"
)

// The ACME account and the lego client that speaks for it (legoMu held throughout).

// clientLocked returns the lego client, registering the account on first use.
func (m *Manager) clientLocked() (*lego.Client, error) {
	if m.client != nil {
		return m.client, nil
	}
	acct, stored, err := m.store.loadAccount(m.cfg.Directory, m.cfg.Email)
	if err != nil {
		return nil, err
	}
	hc, err := m.httpClient()
	if err != nil {
		return nil, err
	}
	if m.cfg.Profile != "" {
		if err := checkProfile(hc, m.cfg.Directory, m.cfg.Profile); err != nil {
			return nil, err
		}
	}
	client, err := lego.NewClient(&lego.Config{
		CADirURL: m.cfg.Directory, User: acct, HTTPClient: hc, UserAgent: "edgerelay",
		Certificate: lego.CertificateConfig{KeyType: certcrypto.EC256, Timeout: 30 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", m.cfg.Directory, err)
	}
	if acct.reg == nil {
		if err := m.register(client, acct); err != nil {
			return nil, err
		}
	} else if stored {
		m.log.Debug("using stored ACME account", "uri", acct.reg.URI)
	}
	m.client, m.acct = client, acct
	return client, nil
}

func (m *Manager) register(client *lego.Client, acct *account) error {
	var reg *registration.Resource
	var err error
	if m.cfg.EAB.KID != "" {
		reg, err = client.Registration.RegisterWithExternalAccountBinding(registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: m.cfg.EAB.KID, HmacEncoded: m.cfg.EAB.HMAC,
		})
	} else {
		reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return fmt.Errorf("registering the ACME account: %w", err)
	}
	acct.reg = reg
	m.log.Info("ACME account registered", "uri", reg.URI, "email", m.cfg.Email)
	if err := m.store.saveAccount(m.cfg.Directory, acct); err != nil {
		return fmt.Errorf("saving the ACME account: %w", err)
	}
	return nil
}

// forgetAccountLocked drops the account the CA no longer knows, so the next flow registers
// anew.
func (m *Manager) forgetAccountLocked() error {
	m.client, m.acct = nil, nil
	if m.store.dir == "" {
		return nil
	}
	err := os.Remove(filepath.Join(m.store.dir, accountName(m.cfg.Directory)+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// httpClient trusts the system roots plus acme.ca_cert_file; its requests carry the flow's
// context (flowTransport).
func (m *Manager) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.cfg.CACertFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(m.cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("acme.ca_cert_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme.ca_cert_file: %s holds no PEM certificate", m.cfg.CACertFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	m.transport = tr
	var rt http.RoundTripper = tr
	if m.wrapRT != nil {
		rt = m.wrapRT(rt)
	}
	return &http.Client{Transport: &flowTransport{next: rt, m: m}, Timeout: 2 * time.Minute}, nil
}

// closeIdle closes the connections to the CA kept between requests: flows are hours apart,
// and a stopped Manager leaves none behind.
func (m *Manager) closeIdle() {
	if m.transport != nil {
		m.transport.CloseIdleConnections()
	}
}

// checkProfile makes sure the CA's directory offers profile (draft-ietf-acme-profiles: the
// "profiles" object in the directory's meta), so a typo is reported with the choices
// instead of as a refused order.
func checkProfile(hc *http.Client, directory, profile string) error {
	resp, err := hc.Get(directory)
	if err != nil {
		return fmt.Errorf("ACME directory %s: %w", directory, err)
	}
	defer resp.Body.Close()
	var dir struct {
		Meta struct {
			Profiles map[string]string `json:"profiles"`
		} `json:"meta"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir); err != nil {
		return fmt.Errorf("ACME directory %s: %w", directory, err)
	}
	offered := dir.Meta.Profiles
	if _, ok := offered[profile]; ok {
		return nil
	}
	if len(offered) == 0 {
		return fmt.Errorf("acme.profile %q: the CA at %s offers no certificate profiles; remove acme.profile", profile, directory)
	}
	names := make([]string, 0, len(offered))
	for n := range offered {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("acme.profile %q: the CA at %s offers %s", profile, directory, strings.Join(names, ", "))
}
