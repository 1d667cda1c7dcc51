package ddns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/libdns/libdns"

	"github.com/edgerelay/edgerelay/ddns/provider"
)

// record is one configured record and what the updater knows about it.
type record struct {
	cfg       Record
	rel       string // name relative to the zone ("@" for the apex)
	fqdn      string // without trailing dot
	key       string // "AAAA derp.example.com", the state file key
	fixed     netip.Addr
	iid       netip.Addr // a LAN host's interface identifier (suffix or mac), or zero
	base      netip.Addr // for a LAN host: the interface address its prefix came from
	selected  netip.Addr
	published netip.Addr
	changed   time.Time
	pubAt     time.Time
	verified  time.Time // last comparison with what DNS holds
	eventAt   time.Time // kernel event not yet published, for the latency figure
	fails     int
	nextTry   time.Time
	lastErr   string
	rejectMsg string // last "no eligible address" explanation, logged once per change
}

// newRecord builds the record for rc in zone (with trailing dot); Config.Validate has
// checked rc.
func newRecord(rc Record, zone string) *record {
	rel, _ := relativeName(rc.Name, zone)
	r := &record{cfg: rc, rel: rel}
	r.fqdn = strings.TrimSuffix(libdns.AbsoluteName(rel, zone), ".")
	r.key = rc.Type + " " + r.fqdn
	r.iid, _ = rc.hostID()
	if rc.Value != "" {
		r.fixed, _ = rc.fixedValue()
	}
	return r
}

// RecordFQDN is the fully qualified name (no trailing dot) a record of zone publishes, or ""
// when the name is invalid or outside the zone.
func RecordFQDN(name, zone string) string {
	rel, err := relativeName(name, zone)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(libdns.AbsoluteName(rel, provider.Fqdn(zone)), ".")
}

// relativeName accepts a record name relative to the zone ("derp", "@") or absolute
// ("derp.example.com" or with a trailing dot) and returns it relative to zone.
func relativeName(name, zone string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	z := strings.ToLower(strings.TrimSuffix(zone, "."))
	switch {
	case name == "" || name == ".":
		return "", errors.New("name is empty (use @ for the zone apex)")
	case name == "@" || strings.TrimSuffix(name, ".") == z:
		return "@", nil
	case strings.HasSuffix(strings.TrimSuffix(name, "."), "."+z):
		return strings.TrimSuffix(strings.TrimSuffix(name, "."), "."+z), nil
	case strings.HasSuffix(name, "."):
		return "", fmt.Errorf("name %q is outside zone %s", name, z)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.ContainsAny(l, " \t\"\\;()") {
			return "", fmt.Errorf("name %q is not a valid DNS name", name)
		}
	}
	return name, nil
}

func (r *record) source() string {
	switch {
	case r.cfg.Interface != "" && r.cfg.Suffix != "":
		return "interface " + r.cfg.Interface + " prefix + " + r.cfg.Suffix
	case r.cfg.Interface != "" && r.cfg.MAC != "":
		return "interface " + r.cfg.Interface + " prefix + EUI-64 of " + r.cfg.MAC
	case r.cfg.Interface != "":
		return "interface " + r.cfg.Interface
	case r.cfg.STUN != "":
		return "stun " + r.cfg.STUN
	case r.cfg.URL != "":
		return "url " + r.cfg.URL
	}
	return "value"
}
