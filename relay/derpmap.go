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

	"github.com/edgerelay/edgerelay/agent/config"
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
// best address of this box — a public IPv4, else a global IPv6, else loopback.
func Hostname(cfg config.Relay) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	a := LocalAddrs()
	switch {
	case a.IPv4.IsValid():
		return a.IPv4.String()
	case a.IPv6.IsValid():
		return a.IPv6.String()
	}
	return "127.0.0.1"
}

// LocalAddrs finds this box's public IPv4 and global IPv6 on its interfaces.
func LocalAddrs() Addrs {
	var a Addrs
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return a
	}
	for _, ia := range ifaddrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr()
		if !IsPublic(ip) {
			continue
		}
		if ip.Is4() && !a.IPv4.IsValid() {
			a.IPv4 = ip
		} else if ip.Is6() && !a.IPv6.IsValid() {
			a.IPv6 = ip
		}
	}
	return a
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// IsPublic reports whether ip is globally routable (not private, CGNAT, ULA, link-local,
// loopback, multicast).
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

// Node builds this node's DERP map entry. Addresses come from, in order: relay.ipv4/ipv6,
// the agent's current addresses, the hostname if it is an IP, the hostname's DNS records.
func Node(ctx context.Context, cfg config.Relay, cur Addrs, pin string) DERPNode {
	host := Hostname(cfg)
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
func MeshNodes(cfg config.Relay) []DERPNode {
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

// Region is this node's region with the given nodes.
func Region(cfg config.Relay, nodes ...DERPNode) DERPRegion {
	return DERPRegion{RegionID: cfg.Region.ID, RegionCode: cfg.Region.Code, RegionName: cfg.Region.Name, Nodes: nodes}
}

// DERPMapFormats are the output formats of WriteDERPMap.
var DERPMapFormats = []string{"tailscale", "json", "headscale"}

// WriteDERPMap prints a region as:
//   - tailscale: the "derpMap" block for the tailnet policy file (ACLs);
//   - json: a DERP map JSON file for headscale's derp.urls (or any client taking a map);
//   - headscale: the YAML form for headscale's derp.paths.
func WriteDERPMap(w io.Writer, format string, r DERPRegion) error {
	id := strconv.Itoa(r.RegionID)
	switch format {
	case "tailscale":
		b, err := json.MarshalIndent(map[string]any{"derpMap": map[string]any{
			"OmitDefaultRegions": false,
			"Regions":            map[string]DERPRegion{id: r},
		}}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "json":
		b, err := json.MarshalIndent(map[string]any{"Regions": map[string]DERPRegion{id: r}}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "headscale":
		return writeHeadscaleYAML(w, r)
	}
	return fmt.Errorf("unknown derpmap format %q (one of %s)", format, strings.Join(DERPMapFormats, ", "))
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
