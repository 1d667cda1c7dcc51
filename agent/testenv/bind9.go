package testenv

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BIND9 is a named process serving test zones on 127.0.0.1:53 of the current network
// namespace (use InNetNS first), accepting TSIG-signed RFC 2136 updates and zone transfers.
type BIND9 struct {
	Addr    string // 127.0.0.1:53
	KeyName string
	KeyAlg  string
	Key     string // base64 TSIG secret
	Zones   []string

	t    testing.TB
	dir  string
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *LockedBuffer
}

// StartBIND9 starts named authoritative for zones (e.g. "example.test"), each with an SOA,
// an NS "ns.<zone>" at 127.0.0.1, and update and transfer rights for one TSIG key.
func StartBIND9(t testing.TB, zones ...string) *BIND9 {
	t.Helper()
	RequireRoot(t)
	if os.Getenv(netnsEnv) == "" {
		t.Fatal("StartBIND9 binds port 53: call it only inside InNetNS")
	}
	RequireCommand(t, "named")
	secret := make([]byte, 32)
	rand.Read(secret)
	b := &BIND9{
		Addr: "127.0.0.1:53", KeyName: "edgerelay-test.", KeyAlg: "hmac-sha256",
		Key: base64.StdEncoding.EncodeToString(secret), Zones: zones, t: t, dir: t.TempDir(),
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on port 53 { 127.0.0.1; };
	listen-on-v6 { none; };
	// Recursion (for loopback clients) makes named chase a CNAME from one of its zones into
	// another as public resolvers and CA validators do; the namespace has no route out, so
	// nothing else is ever reached.
	recursion yes;
	allow-recursion { 127.0.0.0/8; };
	allow-query { any; };
	dnssec-validation no;
	notify no;
};
controls { };
key %[4]q { algorithm %[5]s; secret %[6]q; };
`, b.dir, filepath.Join(b.dir, "named.pid"), filepath.Join(b.dir, "session.key"), b.KeyName, b.KeyAlg, b.Key)
	for _, z := range zones {
		z = strings.TrimSuffix(z, ".")
		file := filepath.Join(b.dir, z+".zone")
		zone := fmt.Sprintf("$TTL 60\n@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 60 60 600 5\n@ IN NS ns.%[1]s.\nns IN A 127.0.0.1\n", z)
		if err := os.WriteFile(file, []byte(zone), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&conf, "zone %q { type primary; file %q; allow-update { key %q; }; allow-transfer { key %q; }; };\n", z, file, b.KeyName, b.KeyName)
	}
	b.conf = filepath.Join(b.dir, "named.conf")
	if err := os.WriteFile(b.conf, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// Start (re)starts named with the same configuration and zones (updates kept in the journal)
// and waits until it answers.
func (b *BIND9) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	b.log = &LockedBuffer{}
	cmd := exec.Command("named", "-g", "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting named: %v", err)
	}
	b.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := b.query(b.Zones[0], dns.TypeSOA); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("named did not answer within 20 s; its log:\n%s", b.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops named (a no-op when stopped).
func (b *BIND9) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
	b.cmd = nil
}

// Lookup asks named for name's records of type qtype (authoritative answer section).
func (b *BIND9) Lookup(name string, qtype uint16) ([]dns.RR, error) {
	return b.query(name, qtype)
}

func (b *BIND9) query(name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s %s: rcode %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
	}
	return r.Answer, nil
}

// Log returns named's output so far.
func (b *BIND9) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

// Update applies a TSIG-signed RFC 2136 update adding the records given in zone-file syntax
// (e.g. "x.example.test. 60 IN CNAME y.other.test.") to zone.
func (b *BIND9) Update(zone string, records ...string) error {
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			return fmt.Errorf("record %q: %w", s, err)
		}
		m.Insert([]dns.RR{rr})
	}
	m.SetTsig(b.KeyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{b.KeyName: b.Key}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("update refused: %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}
