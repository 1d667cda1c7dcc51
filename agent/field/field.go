// Package field collects what is wrong with a config section and holds the value checks
// several sections share (host:port, host names, interface names, one-of, URLs). A
// problem's key is relative to the section that owns the value ("routes[0]",
// "verify_clients.allow[1]"); agent/config prefixes the section and adds the source line.
// Every part's Config.Validate uses it, so it imports nothing of edgerelay's.
package field

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a value: its key path and what was expected.
type Problem struct {
	Key string
	Msg string
}

// Problems is every problem found in one section; it is the error Validate returns.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Key != "" {
			b.WriteString(p.Key + ": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Add records a problem at key.
func (ps *Problems) Add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Err is nil without problems, else ps.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Prefix returns the problems with section put in front of their keys.
func (ps Problems) Prefix(section string) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		out[i] = Problem{Key: Join(section, p.Key), Msg: p.Msg}
	}
	return out
}

// Merge adds the problems of a nested section's Validate under section. An error that is
// not Problems becomes one problem at section.
func (ps *Problems) Merge(section string, err error) {
	if err == nil {
		return
	}
	var sub Problems
	if errors.As(err, &sub) {
		*ps = append(*ps, sub.Prefix(section)...)
		return
	}
	ps.Add(section, "%v", err)
}

// Join puts key under parent: "a" + "b" is "a.b", "a" + "[2]" is "a[2]".
func Join(parent, key string) string {
	switch {
	case parent == "":
		return key
	case key == "":
		return parent
	case strings.HasPrefix(key, "["):
		return parent + key
	}
	return parent + "." + key
}

// Index is the key of a list item: Index("routes", 0) is "routes[0]".
func Index(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }

// On reports whether an optional boolean is set and true, with def used when unset.
func On(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// OneOf checks that v is one of allowed.
func (ps *Problems) OneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		ps.Add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// HostPort checks a listen or server address: host:port or :port, the host an IP address
// or a name.
func (ps *Problems) HostPort(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.Add(key, "expected host:port or :port, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ps.Add(key, "port %q is not a number between 0 and 65535", port)
	}
	if host != "" && !IsHost(host) {
		ps.Add(key, "host %q is not an IP address or name", host)
	}
}

// IsHost accepts IP addresses and DNS names (letters, digits, hyphens, underscores, dots;
// a trailing dot is fine).
func IsHost(s string) bool {
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

// IsIfName accepts what Linux accepts as an interface name (dots included, as in eth0.2),
// minus characters that would break a /proc/sys path or a firewall rule.
func IsIfName(n string) bool {
	return n != "" && len(n) <= 15 && n != "." && n != ".." && !strings.ContainsAny(n, "/\"\\ \t\n:")
}

// IsURL reports whether s is an absolute URL with a host and one of schemes.
func IsURL(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Host != "" && slices.Contains(schemes, u.Scheme)
}
