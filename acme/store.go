package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-acme/lego/v4/registration"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// store keeps the ACME account and the certificate under <state_dir>/acme. Secrets are
// written 0600 through atomicfile, and the certificate's key and chain live in one file so
// a crash can never pair a new chain with an old key.
type store struct {
	dir     string // "" keeps nothing on disk
	profile string // acme.profile, part of the certificate's file name
}

// account is one ACME account at one CA.
type account struct {
	email string
	key   crypto.Signer
	reg   *registration.Resource
}

func (a *account) GetEmail() string                        { return a.email }
func (a *account) GetRegistration() *registration.Resource { return a.reg }
func (a *account) GetPrivateKey() crypto.PrivateKey        { return a.key }

// accountName keys the account files by directory URL, so moving from a staging to a
// production CA registers anew instead of presenting an unknown account.
func accountName(directory string) string {
	h := sha256.Sum256([]byte(directory))
	return "account-" + hex.EncodeToString(h[:6])
}

type accountFile struct {
	Directory    string                 `json:"directory"`
	Email        string                 `json:"email"`
	Key          string                 `json:"key"` // PEM, EC private key
	Registration *registration.Resource `json:"registration,omitempty"`
}

// loadAccount returns the stored account for directory, or a new one with a fresh key.
func (s store) loadAccount(directory, email string) (*account, bool, error) {
	if s.dir != "" {
		b, err := os.ReadFile(filepath.Join(s.dir, accountName(directory)+".json"))
		if err == nil {
			var f accountFile
			if err := json.Unmarshal(b, &f); err != nil {
				return nil, false, fmt.Errorf("account file: %w", err)
			}
			key, err := parseKey([]byte(f.Key))
			if err != nil {
				return nil, false, fmt.Errorf("account key: %w", err)
			}
			return &account{email: email, key: key, reg: f.Registration}, true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	return &account{email: email, key: key}, false, nil
}

func (s store) saveAccount(directory string, a *account) error {
	if s.dir == "" {
		return nil
	}
	keyPEM, err := encodeKey(a.key)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(accountFile{Directory: directory, Email: a.email, Key: string(keyPEM), Registration: a.reg}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, accountName(directory)+".json"), b, 0o600)
}

// certName is the file name for a certificate covering domains, issued under an ACME
// profile ("" for the CA's default): a certificate of another profile is not reused.
func certName(domains []string, profile string) string {
	n := strings.ReplaceAll(domains[0], "*", "_")
	if profile != "" {
		n += "-" + profile
	}
	return "cert-" + strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(n)) + ".pem"
}

// saveCert writes the chain and key in one file.
func (s store) saveCert(domains []string, chainPEM, keyPEM []byte) error {
	if s.dir == "" {
		return nil
	}
	data := append(append(slices.Clone(chainPEM), '\n'), keyPEM...)
	return atomicfile.Write(filepath.Join(s.dir, certName(domains, s.profile)), data, 0o600)
}

// loadCert returns the stored certificate for domains, or nil when there is none.
func (s store) loadCert(domains []string) (*tls.Certificate, error) {
	if s.dir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, certName(domains, s.profile)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseCertFile(b)
}

// parseCertFile splits a stored file into chain and key and checks they belong together.
func parseCertFile(b []byte) (*tls.Certificate, error) {
	var chain, key []byte
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, pem.EncodeToMemory(blk)...)
		} else if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			key = pem.EncodeToMemory(blk)
		}
	}
	if chain == nil || key == nil {
		return nil, errors.New("stored certificate file lacks a certificate or a key")
	}
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("stored certificate: %w", err)
	}
	return &c, nil
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(blk.Bytes); err2 == nil {
			return ek, nil
		}
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}
