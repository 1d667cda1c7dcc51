package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

func checkHostPort(c *checker, path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.add(path, "expected host:port or :port, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		c.add(path, "port %q is not a number between 0 and 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		c.add(path, "host %q is not an IP address or name", host)
	}
}

// validHostname accepts IP addresses and DNS names (letters, digits, hyphens, dots).
func validHostname(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

// ReadSecret returns a secret given inline or in a file (trimmed), preferring the file. key
// names the config key for error messages.
func ReadSecret(value, file, key string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_file: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s_file: %s is empty", key, file)
	}
	return s, nil
}
