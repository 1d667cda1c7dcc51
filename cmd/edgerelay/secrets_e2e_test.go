package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestWeakServerKeyRefused: a derp.key holding no key ({} or null) would load as the
// all-zero private key, whose public key anyone can compute. The relay refuses to start on
// it, says why, and leaves the file alone.
func TestWeakServerKeyRefused(t *testing.T) {
	for _, content := range []string{"{}", "null"} {
		t.Run(content, func(t *testing.T) {
			dir := t.TempDir()
			keyPath := filepath.Join(dir, "derp.key")
			os.WriteFile(keyPath, []byte(content), 0o600)
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nrelay:\n  hostname: 127.0.0.1\n  listen: %s\n  stun_listen: \"\"\n  tls: {mode: self-signed}\n", dir, addr)), 0o600)
			d := startDaemon(t, nil, "-c", cfg)
			testenv.WaitFor(t, 30*time.Second, "the relay to report the key file", func() bool {
				return strings.Contains(d.log(), "server key "+keyPath+": no private key in it")
			})
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Fatal("the relay listens with an all-zero key")
			}
			if b, _ := os.ReadFile(keyPath); string(b) != content {
				t.Fatalf("derp.key was rewritten to %q", b)
			}
		})
	}
}

// TestLoosePermissionsWarned: check and run name secret files (and the state_dir) that
// other users can read, with their mode; run makes the state_dir 0700.
func TestLoosePermissionsWarned(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o755)
	os.Chmod(state, 0o755)
	meshKey := filepath.Join(dir, "mesh.key")
	os.WriteFile(meshKey, []byte(strings.Repeat("5a", 32)+"\n"), 0o600)
	os.Chmod(meshKey, 0o666)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nrelay:\n  hostname: 127.0.0.1\n  listen: %s\n  stun_listen: \"\"\n"+
		"  tls: {mode: self-signed}\n  mesh: {key_file: %s}\n", state, addr, meshKey)), 0o600)
	out, err := edgerelay(t, "check", "-c", cfg)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"relay.mesh.key_file: " + meshKey + " is mode 0666",
		"state_dir: " + state + " is mode 0755",
		cfg + ": ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	d := startDaemon(t, nil, "-c", cfg)
	waitTCP(t, addr)
	if log := d.log(); !strings.Contains(log, meshKey+" is mode 0666") || !strings.Contains(log, "state_dir was open to other users") {
		t.Errorf("run did not warn:\n%s", log)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state_dir mode %v after run, want 0700", fi.Mode().Perm())
	}
}
