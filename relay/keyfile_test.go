package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "derp.key")
	k, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", fi.Mode(), err)
	}
	if again, err := LoadOrCreateKey(path); err != nil || again != k {
		t.Fatalf("reload: %v, same key %v", err, again == k)
	}
	// derper's file format, so keys move between the two.
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"PrivateKey": "privkey:`) {
		t.Fatalf("file %s", b)
	}
	for name, content := range map[string]string{
		"empty object": "{}",
		"null":         "null",
		"zero key":     `{"PrivateKey": "privkey:` + strings.Repeat("00", 32) + `"}`,
		"not JSON":     "privkey:abc",
		"empty file":   "",
		"short key":    `{"PrivateKey": "privkey:abcd"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "derp.key")
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := LoadOrCreateKey(p); err == nil || !strings.Contains(err.Error(), p) {
				t.Fatalf("err %v, want one naming %s", err, p)
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Fatalf("the file was changed to %q", b)
			}
		})
	}
}
