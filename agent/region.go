package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/relay"
)

// The agent owns the DERP region its relay publishes: it computes the region from the
// addresses it knows (ddns's selection, or this box's interfaces when ddns is off), hands
// the live form to the relay (relay.SetRegion, served at /derpmap.json), and keeps the form
// to paste for status and `edgerelay derpmap`. It remembers the map last handed out for
// pasting (state_dir/derpmap-published.json), so a map that no longer matches the line (an
// IP-only relay whose address changed) is reported stale, with the new one, until the new
// one is handed out.

// publishedFile holds the region last handed out for pasting.
const publishedFile = "derpmap-published.json"

// regionSettle groups the burst of kernel events one address change makes.
const regionSettle = 300 * time.Millisecond

// followRegion recomputes the region once the relay is ready, then whenever the addresses
// may have changed, until ctx ends.
func (a *Agent) followRegion(ctx context.Context, r *relay.Relay, rc relay.Config, stateDir string) {
	select {
	case <-r.Ready():
	case <-ctx.Done():
		return
	}
	prev, err := loadPublished(stateDir)
	if err != nil {
		a.log.Warn("cannot read the DERP map handed out earlier; taking the current one", "err", err)
	}
	a.followAddrs(ctx, "relay", a.regionKick, func() { a.computeRegion(ctx, r, rc, stateDir, prev) })
}

// followAddrs calls f at once and whenever the addresses may have changed (a kick, a
// kernel address or link event), until ctx ends; component names the watch in logs.
func (a *Agent) followAddrs(ctx context.Context, component string, kicked <-chan struct{}, f func()) {
	netKick := make(chan time.Time, 1)
	watched := make(chan struct{})
	go func() {
		ddns.WatchNet(ctx, a.log.With("component", component), netKick)
		close(watched)
	}()
	for ctx.Err() == nil {
		f()
		select {
		case <-ctx.Done():
		case <-kicked:
		case <-netKick:
			select { // let the rest of the change arrive
			case <-ctx.Done():
			case <-time.After(regionSettle):
			}
		}
	}
	<-watched
}

// kick asks a follower to look again (non-blocking).
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// computeRegion builds the region from what the agent knows now and publishes it.
func (a *Agent) computeRegion(ctx context.Context, r *relay.Relay, rc relay.Config, stateDir string, prev *relay.DERPRegion) {
	a.mu.Lock()
	cfg, addrs := a.cfg, a.addrs
	a.mu.Unlock()
	ddnsOn := cfg.DDNS != nil && config.On(cfg.DDNS.Enabled, true)
	if !ddnsOn {
		addrs = relay.Addrs{}
	}
	addrs = orLocal(addrs, rc.Hostname)
	hint := ""
	if moved := movedFrom(rc.Hostname); moved.IsValid() {
		hint = fmt.Sprintf("relay.hostname %s is no longer an address of this box (its public address is now %s): "+
			"set relay.hostname to it, or leave it empty to follow the line", rc.Hostname, moved)
		rc.Hostname = moved.String()
	}
	if ad := r.Addr(); ad != nil { // the bound port, when the config asked for any
		host, _, _ := net.SplitHostPort(rc.Listen)
		rc.Listen = net.JoinHostPort(host, strconv.Itoa(ad.Port))
	}
	if sa := r.STUNAddr(); sa != nil {
		host, _, _ := net.SplitHostPort(rc.STUNAddr())
		s := net.JoinHostPort(host, strconv.Itoa(sa.Port))
		rc.STUNListen = &s
	}
	followDNS := ddnsOn && relayRecord(cfg.DDNS.Config, rc.Hostname) != ""
	pasted, live := relay.BuildMap(ctx, rc, addrs, r.CertPin(), followDNS)
	r.SetRegion(live)
	noteIPOnly(&pasted)
	// IP-only without a public address (the WAN not up yet): nothing worth pasting.
	usable := true
	if ip, err := netip.ParseAddr(pasted.Region.Nodes[0].HostName); err == nil && rc.Hostname == "" && !ddns.IsPublic(ip) {
		usable = false
		hint = "relay.hostname is empty and this box has no public address yet: the DERP map names " + ip.String() +
			" until one appears (or set relay.hostname to a DNS name or the public IP)"
	}
	a.mu.Lock()
	a.hostHint = hint
	a.mu.Unlock()
	a.setMap(pasted, stateDir, usable, prev)
}

// movedFrom returns this box's current public address of the family of a typed IP
// hostname that is no longer on any interface (the line's address changed), else the zero
// Addr. A typed address that was never on an interface (a port forward to a box behind
// NAT, whose own addresses are private) is left alone.
func movedFrom(hostname string) netip.Addr {
	ip, err := netip.ParseAddr(hostname)
	if err != nil || !ddns.IsPublic(ip) || ddns.HasLocalAddr(ip) {
		return netip.Addr{}
	}
	v4, v6 := ddns.LocalAddrs()
	if ip.Unmap().Is4() {
		return v4
	}
	return v6
}

// orLocal is cur, or, for an IP-only relay (no hostname) while cur knows no address, this
// box's public addresses on its interfaces.
func orLocal(cur relay.Addrs, hostname string) relay.Addrs {
	if hostname != "" || cur.IPv4.IsValid() || cur.IPv6.IsValid() {
		return cur
	}
	v4, v6 := ddns.LocalAddrs()
	return relay.Addrs{IPv4: v4, IPv6: v6}
}

// noteIPOnly tells whoever pastes a map that names a public IP that it goes stale when the
// line's address changes (status says so, see setMap).
func noteIPOnly(m *relay.Map) {
	if ip, err := netip.ParseAddr(m.Region.Nodes[0].HostName); err == nil && ddns.IsPublic(ip) {
		m.Notes = append(m.Notes, "IP-only: when this line's address changes, `edgerelay status` (and the LuCI page) says this map is stale and shows the new one. A DNS name kept by DDNS avoids re-pasting.")
	}
}

// setMap makes m the map to paste and compares it with the one handed out last, prev when
// none was yet this run (what state_dir recorded). The first usable map is taken as handed
// out when none was before.
func (a *Agent) setMap(m relay.Map, stateDir string, usable bool, prev *relay.DERPRegion) {
	save := false
	a.mu.Lock()
	a.dmap, a.mapDir = &m, stateDir
	if a.published == nil && usable {
		if prev == nil {
			a.handOutLocked()
			save = true
		} else {
			a.published = prev
		}
	}
	a.mapReadyOnce.Do(func() { close(a.mapReady) })
	stale := a.staleLocked()
	if stale != "" && !reflect.DeepEqual(a.staleLogged, m.Region) {
		a.staleLogged = m.Region
	} else {
		stale = ""
	}
	a.mu.Unlock()
	if stale != "" { // logged outside the lock: a slow log writer never holds up status
		a.log.Warn(stale, "new_map", string(relay.DERPMapJSON(m.Region)))
	}
	if save {
		a.savePublished()
	}
}

// staleLocked is the warning when the map handed out last no longer matches, else "".
func (a *Agent) staleLocked() string {
	if a.dmap == nil || a.published == nil || reflect.DeepEqual(*a.published, a.dmap.Region) {
		return a.hostHint
	}
	msg := fmt.Sprintf("the DERP map pasted earlier is stale: it says %s, this relay is now %s. "+
		"Paste the new map (`edgerelay derpmap` prints it; headscale's derp.urls with the live map follows by itself)",
		describeRegion(*a.published), describeRegion(a.dmap.Region))
	if a.hostHint != "" {
		msg += "; " + a.hostHint
	}
	return msg
}

// describeRegion names what a pasted map pins down: the first node's host, addresses, ports
// and pin.
func describeRegion(r relay.DERPRegion) string {
	if len(r.Nodes) == 0 {
		return fmt.Sprintf("region %d with no node", r.RegionID)
	}
	n := r.Nodes[0]
	parts := []string{fmt.Sprintf("region %d %s port %d", r.RegionID, n.HostName, n.DERPPort)}
	for _, kv := range [][2]string{{"IPv4", n.IPv4}, {"IPv6", n.IPv6}} {
		if kv[1] != "" && kv[1] != n.HostName {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	if n.CertName != "" {
		parts = append(parts, "pin "+n.CertName[:min(len(n.CertName), 19)]+"…")
	}
	return strings.Join(parts, ", ")
}

// handOutLocked records the current map as the one pasted; savePublished keeps it.
func (a *Agent) handOutLocked() {
	reg := a.dmap.Region
	a.published = &reg
}

// savePublished writes the map handed out last to state_dir, outside a.mu: a status read
// never waits on the disk.
func (a *Agent) savePublished() {
	a.fileMu.Lock()
	defer a.fileMu.Unlock()
	a.mu.Lock()
	reg, dir := a.published, a.mapDir
	a.mu.Unlock()
	if reg == nil {
		return
	}
	b, _ := json.MarshalIndent(reg, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, publishedFile), append(b, '\n'), 0o600); err != nil {
		a.log.Warn("cannot save the DERP map handed out", "err", err)
	}
}

func loadPublished(stateDir string) (*relay.DERPRegion, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, publishedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r relay.DERPRegion
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", publishedFile, err)
	}
	return &r, nil
}

// DERPMap returns the map to paste as of now (false while the relay has none).
func (a *Agent) DERPMap() (relay.Map, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dmap == nil {
		return relay.Map{}, false
	}
	return *a.dmap, true
}

// HandOut returns the map to paste and records it as the one pasted: `edgerelay derpmap`
// and the embedded default's first run print what this returns.
func (a *Agent) HandOut() (relay.Map, bool) {
	a.mu.Lock()
	if a.dmap == nil {
		a.mu.Unlock()
		return relay.Map{}, false
	}
	a.handOutLocked()
	m := *a.dmap
	a.mu.Unlock()
	a.savePublished()
	return m, true
}

// MapReady is closed once the relay has had a region.
func (a *Agent) MapReady() <-chan struct{} { return a.mapReady }

// dropMap forgets the map when the relay part stops.
func (a *Agent) dropMap() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dmap = nil
}

// OfflineMap is the map `edgerelay derpmap` prints when no daemon answers: from the config,
// the interfaces (or DNS) and the self-signed certificate in state_dir.
func OfflineMap(ctx context.Context, cfg *config.Config) (relay.Map, error) {
	rc := cfg.Relay.Config
	cur := orLocal(relay.Addrs{}, rc.Hostname)
	pin := ""
	if rc.TLS.Mode == relay.TLSSelfSigned {
		ss, err := relay.LoadOrCreateSelfSigned(cfg.StateDir, relay.Hostname(rc, cur))
		if err != nil {
			return relay.Map{}, err
		}
		pin = ss.Pin()
	}
	ddnsOn := cfg.DDNS != nil && config.On(cfg.DDNS.Enabled, true)
	m, _ := relay.BuildMap(ctx, rc, cur, pin, ddnsOn && relayRecord(cfg.DDNS.Config, rc.Hostname) != "")
	noteIPOnly(&m)
	return m, nil
}

// publicAddrs are the line's public addresses: ddns's selection when ddns runs, else this
// box's public addresses on its interfaces.
func (a *Agent) publicAddrs() []netip.Addr {
	a.mu.Lock()
	cfg, addrs := a.cfg, a.addrs
	a.mu.Unlock()
	if cfg.DDNS == nil || !config.On(cfg.DDNS.Enabled, true) {
		addrs.IPv4, addrs.IPv6 = ddns.LocalAddrs()
	}
	var out []netip.Addr
	if ddns.IsPublic(addrs.IPv4) { // false for the zero Addr
		out = append(out, addrs.IPv4)
	}
	if ddns.IsPublic(addrs.IPv6) {
		out = append(out, addrs.IPv6)
	}
	return out
}
