package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// notSecret are the *_file keys that name public material (certificates, CA roots); every
// other *_file key names a secret (TSIG key, API token, mesh key, TLS private key).
var notSecret = map[string]bool{"cert_file": true, "ca_file": true, "ca_cert_file": true}

// loosePerm is group write or any access by others: enough for another user on the box to
// read or replace a secret. (Group read alone is how BIND shares TSIG keys with named.)
const loosePerm = 0o027

// PermissionWarnings names every secret file the config points at that other users can
// read or change, and a state_dir (keys, certificates, ACME account) open to them. Missing
// files are left to validation.
func (cfg *Config) PermissionWarnings() []string {
	var warns []string
	check := func(key, path string, loose os.FileMode, fix string) {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm()&loose == 0 {
			return
		}
		warns = append(warns, fmt.Sprintf("%s: %s is mode %04o, open to other users; %s", key, path, fi.Mode().Perm(), fix))
	}
	secretFiles(reflect.ValueOf(cfg).Elem(), "", func(key, path string) {
		check(key, path, loosePerm, "chmod 600 it")
	})
	check("state_dir", cfg.StateDir, 0o077, "run makes it 0700")
	check("state_dir (server key)", filepath.Join(cfg.StateDir, "derp.key"), loosePerm, "chmod 600 it")
	return warns
}

// secretFiles calls f for every set *_file key under v that names a secret.
func secretFiles(v reflect.Value, path string, f func(key, file string)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			secretFiles(v.Elem(), path, f)
		}
	case reflect.Struct:
		for _, yf := range fieldsOf(v.Type()) {
			name, fv := yf.name, v.FieldByIndex(yf.index)
			if fv.Kind() == reflect.String && strings.HasSuffix(name, "_file") && !notSecret[name] {
				if fv.String() != "" {
					f(join(path, name), fv.String())
				}
				continue
			}
			secretFiles(fv, join(path, name), f)
		}
	case reflect.Slice:
		for i := range v.Len() {
			secretFiles(v.Index(i), fmt.Sprintf("%s[%d]", path, i), f)
		}
	}
}
