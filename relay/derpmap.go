package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// DERPRegion and DERPNode mirror the JSON of Tailscale's tailcfg.DERPRegion / DERPNode, the
// shape both the Tailscale ACL derpMap and headscale's derp.urls take.
type DERPRegion struct {
	RegionID   int        `json:"RegionID"`
	RegionCode string     `json:"RegionCode"`
	RegionName string     `json:"RegionName"`
	Nodes      []DERPNode `json:"Nodes"`
}

// DERPNode is one relay of a region.
type DERPNode struct {
	Name     string `json:"Name"`
	RegionID int    `json:"RegionID"`
	HostName string `json:"HostName"`
	CertName string `json:"CertName,omitempty"`
	IPv4     string `json:"IPv4,omitempty"`
	IPv6     string `json:"IPv6,omitempty"`
	STUNPort int    `json:"STUNPort"`
	DERPPort int    `json:"DERPPort"`
	// InsecureForTests is only ever set by tests; the self-signed mode pins instead.
	InsecureForTests bool `json:"InsecureForTests,omitempty"`
}

// Addrs are the node's current public addresses, as the agent knows them (from ddns or
// the interfaces); either may be invalid (unknown).
type Addrs struct {
	IPv4, IPv6 netip.Addr
}

// Hostname is the name clients dial: the configured hostname, else (IP-only mode) the
// best of this box's public addresses cur (IPv4 first), else loopback.
func Hostname(cfg Config, cur Addrs) string {
	switch {
	case cfg.Hostname != "":
		return cfg.Hostname
	case cur.IPv4.IsValid():
		return cur.IPv4.String()
	case cur.IPv6.IsValid():
		return cur.IPv6.String()
	}
	return "127.0.0.1"
}

// Node builds this node's DERP map entry. Addresses come from, in order: relay.ipv4/ipv6,
// the agent's current (public) addresses cur, the hostname if it is an IP, the hostname's
// DNS records. With no hostname (IP-only mode) the node is at cur, IPv4 first.
// With followDNS (the hostname is a name our own DDNS keeps) IPv4 and IPv6 are left out, so
// clients resolve the name and follow address changes without a new map.
func Node(ctx context.Context, cfg Config, cur Addrs, pin string, followDNS bool) DERPNode {
	host := Hostname(cfg, cur)
	n := DERPNode{
		Name:     strconv.Itoa(cfg.Region.ID) + "a",
		RegionID: cfg.Region.ID,
		HostName: host,
		CertName: pin,
		DERPPort: portOf(cfg.Listen, 443),
		STUNPort: -1,
	}
	if s := cfg.STUNAddr(); s != "" {
		n.STUNPort = portOf(s, 3478)
	}
	if followDNS {
		n.IPv4, n.IPv6 = cfg.IPv4, cfg.IPv6 // only what the user set explicitly
		return n
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			cur.IPv4 = ip
		} else {
			cur.IPv6 = ip
		}
	} else if !cur.IPv4.IsValid() && !cur.IPv6.IsValid() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ips, _ := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		for _, ip := range ips {
			ip = ip.Unmap()
			if ip.Is4() && !cur.IPv4.IsValid() {
				cur.IPv4 = ip
			} else if ip.Is6() && !cur.IPv6.IsValid() {
				cur.IPv6 = ip
			}
		}
	}
	n.IPv4, n.IPv6 = addrOr(cfg.IPv4, cur.IPv4), addrOr(cfg.IPv6, cur.IPv6)
	return n
}

func addrOr(configured string, cur netip.Addr) string {
	if configured != "" {
		return configured
	}
	if cur.IsValid() {
		return cur.String()
	}
	return ""
}

func portOf(hostport string, def int) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(p)
	if err != nil || n == 0 {
		return def
	}
	return n
}

// MeshNodes are the region's other relays (relay.mesh.peers) as DERP map nodes, with their
// pins when given; addresses are left to DNS (or the peer's own derpmap output).
func MeshNodes(cfg Config) []DERPNode {
	var nodes []DERPNode
	for i, p := range cfg.Mesh.Peers {
		host, port := p, portOf(cfg.Listen, 443)
		if h, _, err := net.SplitHostPort(p); err == nil {
			host, port = h, portOf(p, port)
		}
		n := DERPNode{
			Name:     fmt.Sprintf("%d%c", cfg.Region.ID, 'b'+rune(i%25)),
			RegionID: cfg.Region.ID,
			HostName: host,
			DERPPort: port,
			STUNPort: -1,
		}
		if s := cfg.STUNAddr(); s != "" {
			n.STUNPort = portOf(s, 3478) // the region's relays are set up alike
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Is4() {
				n.IPv4 = host
			} else {
				n.IPv6 = host
			}
		}
		if i < len(cfg.Mesh.Pins) {
			n.CertName = cfg.Mesh.Pins[i]
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// RegionOf is this node's region with the given nodes.
func RegionOf(cfg Config, nodes ...DERPNode) DERPRegion {
	return DERPRegion{RegionID: cfg.Region.ID, RegionCode: cfg.Region.Code, RegionName: cfg.Region.Name, Nodes: nodes}
}

// Map is this relay's region as published for pasting, with what the printed forms say
// about it.
type Map struct {
	Region DERPRegion `json:"region"`
	// Notes are comment lines for the formats that take comments.
	Notes []string `json:"notes,omitempty"`
	// LiveURL is where the relay serves its live map ("" when relay.live_map is off).
	LiveURL string `json:"live_url,omitempty"`
	// SelfSigned: clients trust the certificate by its pin; a headscale server fetching
	// the live map over HTTPS would not.
	SelfSigned bool `json:"self_signed,omitempty"`
}

// BuildMap computes the region to paste and the one the live map serves, from the current
// addresses cur (zero when unknown), the self-signed pin ("" otherwise) and whether the
// hostname is a name our own DDNS keeps. The live region always carries the current
// addresses: it is fetched again when they change.
func BuildMap(ctx context.Context, cfg Config, cur Addrs, pin string, followDNS bool) (pasted Map, live DERPRegion) {
	mesh := MeshNodes(cfg)
	own := Node(ctx, cfg, cur, pin, followDNS)
	pasted = Map{Region: RegionOf(cfg, append([]DERPNode{own}, mesh...)...), SelfSigned: cfg.TLS.Mode == "self-signed"}
	live = pasted.Region
	if followDNS {
		liveNode := Node(ctx, cfg, cur, pin, false)
		live = RegionOf(cfg, append([]DERPNode{liveNode}, mesh...)...)
		pasted.Notes = append(pasted.Notes, fmt.Sprintf("IPv4/IPv6 are left out on purpose: clients resolve %s, which this relay's own DDNS keeps current, so this map never needs pasting again.", own.HostName))
	}
	if field.On(cfg.LiveMap, true) {
		pasted.LiveURL = "https://" + net.JoinHostPort(own.HostName, strconv.Itoa(own.DERPPort)) + LiveMapPath
	}
	return pasted, live
}

// DERPMapFormats are the output formats of WriteDERPMap.
var DERPMapFormats = []string{"tailscale", "json", "yaml", "headscale"}

// WriteDERPMap prints a map as:
//   - tailscale: the "derpMap" block for the tailnet policy file (HuJSON, with // notes);
//   - json: a DERP map JSON file (what the live map serves; any client taking a map);
//   - yaml: the DERP map as a file for headscale's derp.paths;
//   - headscale: the derp.urls snippet for headscale's config.yaml that follows the live
//     map (the yaml form when the live map is off or headscale could not trust the
//     self-signed certificate).
func WriteDERPMap(w io.Writer, format string, m Map) error {
	comment := func(prefix string, notes ...string) {
		for _, n := range notes {
			fmt.Fprintf(w, "%s %s\n", prefix, n)
		}
	}
	switch format {
	case "tailscale":
		comment("//", m.Notes...)
		b, err := json.MarshalIndent(map[string]any{"derpMap": map[string]any{
			"OmitDefaultRegions": false,
			"Regions":            map[string]DERPRegion{strconv.Itoa(m.Region.RegionID): m.Region},
		}}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "json":
		_, err := fmt.Fprintf(w, "%s\n", DERPMapJSON(m.Region))
		return err
	case "yaml":
		comment("#", m.Notes...)
		return writeHeadscaleYAML(w, m.Region)
	case "headscale":
		switch {
		case m.LiveURL == "":
			comment("#", "relay.live_map is off: a DERP map file for headscale's derp.paths follows (it does not follow address changes).")
			return writeHeadscaleYAML(w, m.Region)
		case m.SelfSigned:
			comment("#", "headscale fetches derp.urls over HTTPS and would not trust this relay's self-signed certificate",
				"(use tls mode acme or manual for the live map); a DERP map file for headscale's derp.paths follows.")
			comment("#", m.Notes...)
			return writeHeadscaleYAML(w, m.Region)
		}
		comment("#", "headscale config.yaml: add this relay's live map to derp.urls (keep the URLs you already use);",
			"headscale fetches it every update_frequency, so clients follow this relay's address changes.")
		_, err := fmt.Fprintf(w, "derp:\n  urls:\n    - %s\n  auto_update_enabled: true\n  update_frequency: 1m\n", m.LiveURL)
		return err
	}
	return fmt.Errorf("unknown derpmap format %q (one of %s)", format, strings.Join(DERPMapFormats, ", "))
}

// DERPMapJSON is a region as a DERP map (tailcfg.DERPMap's JSON).
func DERPMapJSON(r DERPRegion) []byte {
	b, _ := json.MarshalIndent(map[string]any{"Regions": map[string]DERPRegion{strconv.Itoa(r.RegionID): r}}, "", "  ")
	return b
}

// SetRegion makes region what the live map serves. The agent computes it from the
// addresses it owns and sets it whenever they change.
func (r *Relay) SetRegion(region DERPRegion) {
	b := DERPMapJSON(region)
	r.liveJSON.Store(&b)
}

// writeHeadscaleYAML writes the region in the form headscale's derp.paths reads: yaml.v3
// decoding into tailcfg.DERPMap, so keys are the lower-cased Go field names. Written by hand
// (strings double-quoted, JSON-style escapes are valid YAML) to keep a YAML emitter out of
// the binary.
func writeHeadscaleYAML(w io.Writer, r DERPRegion) error {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "regions:\n  %d:\n    regionid: %d\n    regioncode: %s\n    regionname: %s\n    nodes:\n",
		r.RegionID, r.RegionID, q(r.RegionCode), q(r.RegionName))
	for _, n := range r.Nodes {
		fmt.Fprintf(&b, "      - name: %s\n        regionid: %d\n        hostname: %s\n", q(n.Name), n.RegionID, q(n.HostName))
		for _, kv := range [][2]string{{"certname", n.CertName}, {"ipv4", n.IPv4}, {"ipv6", n.IPv6}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "        %s: %s\n", kv[0], q(kv[1]))
			}
		}
		fmt.Fprintf(&b, "        stunport: %d\n        derpport: %d\n", n.STUNPort, n.DERPPort)
		if n.InsecureForTests {
			b.WriteString("        insecurefortests: true\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
