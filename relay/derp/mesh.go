package derp

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// forwarder carries packets to a key connected to another relay of the region. It owns p
// from the call on: it sends or drops (and counts) it, and never blocks for long, because it
// runs on the sender's reader goroutine.
type forwarder interface {
	forward(dst Key, p packet)
}

// meshState is the server's view of the rest of its region: which keys are reachable
// through which mesh link, and the links it runs.
type meshState struct {
	// fwd maps a key to its *fwdSet. Lookups on the packet path are lock-free; changes
	// happen under Server.mu, so they are ordered with local (un)registration.
	fwd sync.Map

	linksMu sync.Mutex
	links   []*meshLink // running mesh clients, for status

	// addrs are where mesh peers were seen lately: the addresses our links reached them at
	// and those they connected from with the mesh key. Admission control keeps a way in
	// for them (IsMeshPeerAddr).
	addrsMu sync.Mutex
	addrs   map[netip.Addr]time.Time
}

// Mesh peer addresses are remembered for a day, at most maxMeshAddrs of them.
const (
	meshAddrTTL  = 24 * time.Hour
	maxMeshAddrs = 64
)

func (m *meshState) noteAddr(a netip.Addr) {
	a = a.Unmap()
	if !a.IsValid() {
		return
	}
	m.addrsMu.Lock()
	defer m.addrsMu.Unlock()
	if m.addrs == nil {
		m.addrs = map[netip.Addr]time.Time{}
	}
	if _, ok := m.addrs[a]; !ok && len(m.addrs) >= maxMeshAddrs {
		var oldest netip.Addr
		for k, t := range m.addrs {
			if !oldest.IsValid() || t.Before(m.addrs[oldest]) {
				oldest = k
			}
		}
		delete(m.addrs, oldest)
	}
	m.addrs[a] = time.Now()
}

// IsMeshPeerAddr reports whether a mesh peer of this region was seen at a lately: our link
// reached it there, or it connected from there with the mesh key.
func (s *Server) IsMeshPeerAddr(a netip.Addr) bool {
	m := &s.mesh
	m.addrsMu.Lock()
	defer m.addrsMu.Unlock()
	t, ok := m.addrs[a.Unmap()]
	return ok && time.Since(t) < meshAddrTTL
}

// fwdSet is every forwarder that announced one key, in registration order. It is never
// modified once stored: changes store a new set. The first forwarder gets the packets, so a
// key announced by several relays (a client roaming, or connected twice) is reached through
// one relay consistently; when that one withdraws, the next earliest takes over.
type fwdSet struct {
	fwds []forwarder
}

func (s *Server) loadFwd(k Key) *fwdSet {
	v, ok := s.mesh.fwd.Load(k)
	if !ok {
		return nil
	}
	return v.(*fwdSet)
}

// meshForwarder returns the forwarder for a key that is not connected here, or nil.
func (s *Server) meshForwarder(k Key) forwarder {
	if set := s.loadFwd(k); set != nil {
		return set.fwds[0]
	}
	return nil
}

// addForwarder records that f reaches k. A forwarder added twice for one key counts once.
func (s *Server) addForwarder(k Key, f forwarder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fwds []forwarder
	if old := s.loadFwd(k); old != nil {
		if slices.Contains(old.fwds, f) {
			return
		}
		fwds = append(slices.Clip(old.fwds), f)
	} else {
		fwds = []forwarder{f}
	}
	s.mesh.fwd.Store(k, &fwdSet{fwds: fwds})
}

// removeForwarder withdraws f for k. When k is then neither local nor reachable through the
// mesh, the clients that received packets from k learn it left the region.
func (s *Server) removeForwarder(k Key, f forwarder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.loadFwd(k)
	if old == nil {
		return
	}
	i := slices.Index(old.fwds, f)
	if i < 0 {
		return
	}
	if len(old.fwds) > 1 {
		s.mesh.fwd.Store(k, &fwdSet{fwds: slices.Delete(slices.Clone(old.fwds), i, i+1)})
		return
	}
	s.mesh.fwd.Delete(k)
	if s.loadSet(k) == nil {
		s.notePeerGoneLocked(k)
	}
}

func (m *meshState) addLink(l *meshLink) {
	m.linksMu.Lock()
	defer m.linksMu.Unlock()
	m.links = append(m.links, l)
}

func (m *meshState) removeLink(l *meshLink) {
	m.linksMu.Lock()
	defer m.linksMu.Unlock()
	if i := slices.Index(m.links, l); i >= 0 {
		m.links = slices.Delete(m.links, i, i+1)
	}
}

// MeshPeerStatus is one mesh link as `status` shows it.
type MeshPeerStatus struct {
	URL        string
	State      string    // connecting | connected | backoff | self | stopped
	ServerKey  string    // the peer's key once known (nodekey:… form)
	Since      time.Time // when State last changed
	Keys       int       // keys the peer announced that we forward to
	Forwarded  int64     // packets written to the peer
	Dropped    int64     // packets for the peer that were dropped (queue full, link down)
	Connects   int64     // handshakes completed
	LastError  string    // why the last connection ended or failed ("" if none)
	HealthText string    // the peer's Health frame text, if any
}

// MeshPeers reports every running mesh client, in the order they were started.
func (s *Server) MeshPeers() []MeshPeerStatus {
	s.mesh.linksMu.Lock()
	links := slices.Clone(s.mesh.links)
	s.mesh.linksMu.Unlock()
	out := make([]MeshPeerStatus, 0, len(links))
	for _, l := range links {
		out = append(out, l.status())
	}
	return out
}
