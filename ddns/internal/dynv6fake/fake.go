// Package dynv6fake is a local stand-in for dynv6's REST API (github.com/dynv6/api-spec,
// https://dynv6.com/api/v2), used by tests because the real service cannot be reached from
// test machines. It follows the documented behaviour: bearer-token auth (401 without a valid
// token), zones by ID and by name (404 for a zone the token does not own), a zone's own
// addresses in ipv4address and ipv6prefix (PATCH), records listed, added (POST), updated
// (PATCH) and deleted (DELETE, 204) by ID, and 422 with an ErrorResponse
// ({"error": {"name": "ValidationError", "message", "fields"}}) for invalid values.
package dynv6fake

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/ddns/internal/fakeapi"
)

// Zone is one zone as the API stores it.
type Zone struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	IPv4Address string    `json:"ipv4address"`
	IPv6Prefix  string    `json:"ipv6prefix"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Record is one record of a zone.
type Record struct {
	ID       int64  `json:"id"`
	ZoneID   int64  `json:"zoneID"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Data     string `json:"data"`
	Priority *int   `json:"priority,omitempty"`
}

// Server is the fake API.
type Server struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	zones    []*Zone
	recs     []*Record
	nextID   int64
	requests []string
}

// New starts a fake whose token owns the given zones (e.g. "home.dynv6.net").
func New(token string, zones ...string) *Server {
	s := &Server{token: token, nextID: 100}
	for _, z := range zones {
		s.nextID++
		s.zones = append(s.zones, &Zone{ID: s.nextID, Name: z, CreatedAt: time.Now(), UpdatedAt: time.Now()})
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that sends requests meant for the real API host to the fake.
func (s *Server) Client() *http.Client { return fakeapi.Client(s.srv, "dynv6.com") }

// Zone returns a copy of a zone.
func (s *Server) Zone(name string) Zone {
	s.mu.Lock()
	defer s.mu.Unlock()
	if z := s.zoneByName(name); z != nil {
		return *z
	}
	return Zone{}
}

// Records returns copies of a zone's records.
func (s *Server) Records(zone string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneByName(zone)
	var out []Record
	for _, r := range s.recs {
		if z != nil && r.ZoneID == z.ID {
			out = append(out, *r)
		}
	}
	return out
}

// Add inserts a record directly, as if made in the web interface.
func (s *Server) Add(zone, name, typ, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.recs = append(s.recs, &Record{ID: s.nextID, ZoneID: s.zoneByName(zone).ID, Name: name, Type: typ, Data: data})
}

// Requests returns "METHOD path" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *Server) zoneByName(n string) *Zone {
	for _, z := range s.zones {
		if strings.EqualFold(z.Name, strings.TrimSuffix(n, ".")) {
			return z
		}
	}
	return nil
}

func (s *Server) zoneByID(id string) *Zone {
	for _, z := range s.zones {
		if strconv.FormatInt(z.ID, 10) == id {
			return z
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// invalid answers 422 with the documented ValidationError.
func invalid(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
		"name": "ValidationError", "message": "Validation failed",
		"fields": []map[string]string{{"name": field, "message": msg}},
	}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/api/v2/zones")
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case p == "" && r.Method == http.MethodGet:
		writeJSON(w, 200, s.zones)
	case len(parts) == 2 && parts[0] == "by-name" && r.Method == http.MethodGet:
		if z := s.zoneByName(parts[1]); z != nil {
			writeJSON(w, 200, z)
		} else {
			http.Error(w, "Not Found", http.StatusNotFound)
		}
	case len(parts) >= 1 && s.zoneByID(parts[0]) == nil:
		http.Error(w, "Not Found", http.StatusNotFound)
	case len(parts) == 1:
		s.zone(w, r, s.zoneByID(parts[0]))
	case len(parts) == 2 && parts[1] == "records":
		s.records(w, r, s.zoneByID(parts[0]))
	case len(parts) == 3 && parts[1] == "records":
		s.record(w, r, s.zoneByID(parts[0]), parts[2])
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) zone(w http.ResponseWriter, r *http.Request, z *Zone) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, 200, z)
	case http.MethodPatch:
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		if v, ok := in["ipv4address"]; ok {
			if a, err := netip.ParseAddr(v); v != "" && (err != nil || !a.Is4()) {
				invalid(w, "ipv4address", "is not a valid IPv4 address")
				return
			}
			z.IPv4Address = v
		}
		if v, ok := in["ipv6prefix"]; ok {
			_, perr := netip.ParsePrefix(v)
			a, aerr := netip.ParseAddr(v)
			if v != "" && perr != nil && (aerr != nil || !a.Is6()) {
				invalid(w, "ipv6prefix", "is not a valid IPv6 address or prefix")
				return
			}
			z.IPv6Prefix = v
		}
		z.UpdatedAt = time.Now()
		writeJSON(w, 200, z)
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

// check validates a record the way the API documents (type enum, data for A/AAAA).
func check(w http.ResponseWriter, rec *Record) bool {
	switch rec.Type {
	case "A", "AAAA":
		a, err := netip.ParseAddr(rec.Data)
		if err != nil || a.Is4() != (rec.Type == "A") {
			invalid(w, "data", "is not a valid "+rec.Type+" address")
			return false
		}
	case "CNAME", "MX", "SPF", "TXT":
		if rec.Data == "" {
			invalid(w, "data", "can't be blank")
			return false
		}
	default:
		invalid(w, "type", "is not included in the list")
		return false
	}
	return true
}

func (s *Server) records(w http.ResponseWriter, r *http.Request, z *Zone) {
	switch r.Method {
	case http.MethodGet:
		out := []*Record{}
		for _, rec := range s.recs {
			if rec.ZoneID == z.ID {
				out = append(out, rec)
			}
		}
		writeJSON(w, 200, out)
	case http.MethodPost:
		var rec Record
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		if !check(w, &rec) {
			return
		}
		s.nextID++
		rec.ID, rec.ZoneID = s.nextID, z.ID
		s.recs = append(s.recs, &rec)
		writeJSON(w, 200, rec)
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, z *Zone, id string) {
	i := slices.IndexFunc(s.recs, func(rec *Record) bool { return rec.ZoneID == z.ID && strconv.FormatInt(rec.ID, 10) == id })
	if i < 0 {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, 200, s.recs[i])
	case http.MethodPatch:
		upd := *s.recs[i]
		if err := json.NewDecoder(r.Body).Decode(&upd); err != nil {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		if !check(w, &upd) {
			return
		}
		upd.ID, upd.ZoneID = s.recs[i].ID, z.ID
		*s.recs[i] = upd
		writeJSON(w, 200, upd)
	case http.MethodDelete:
		s.recs = slices.Delete(s.recs, i, i+1)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}
