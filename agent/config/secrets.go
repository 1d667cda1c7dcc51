package config

import (
	"errors"
	"os"
	"reflect"
	"strings"

	"github.com/edgerelay/edgerelay/agent/field"
)

// readSecrets reads every secret given as a file in v (at key path path): a key x_file next
// to a key x (api_token_file and api_token, key_file and key, hmac_file and hmac) fills x
// with the file's content, trimmed, so parts get the secret itself. A file that cannot be
// read, or is empty, is a problem at x_file.
func readSecrets(v reflect.Value, path string, c *checker) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			readSecrets(v.Elem(), path, c)
		}
	case reflect.Slice:
		for i := range v.Len() {
			readSecrets(v.Index(i), field.Index(path, i), c)
		}
	case reflect.Struct:
		fields := yamlFields(v.Type())
		for _, f := range fieldsOf(v.Type()) {
			name, fv := f.name, v.FieldByIndex(f.index)
			secret, paired := fields[strings.TrimSuffix(name, "_file")]
			if !strings.HasSuffix(name, "_file") || !paired || fv.Kind() != reflect.String || secret.typ.Kind() != reflect.String {
				readSecrets(fv, join(path, name), c)
				continue
			}
			file := fv.String()
			if file == "" {
				continue
			}
			b, err := os.ReadFile(file)
			if err != nil {
				if u := errors.Unwrap(err); u != nil {
					err = u
				}
				c.add(join(path, name), "cannot read %q: %v", file, err)
				continue
			}
			s := strings.TrimSpace(string(b))
			if s == "" {
				c.add(join(path, name), "%s is empty", file)
				continue
			}
			v.FieldByIndex(secret.index).SetString(s)
		}
	}
}

// readSecrets reads the secrets of the sections that will be used: those of running parts,
// and a disabled ddns section whose provider acme borrows.
func (cfg *Config) readSecrets(c *checker) {
	for _, s := range cfg.sections() {
		if s.on || s.key == "ddns" && cfg.borrowsDDNSProvider() {
			readSecrets(reflect.ValueOf(s.whole), s.key, c)
		}
	}
}
