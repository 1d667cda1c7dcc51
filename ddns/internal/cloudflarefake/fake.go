// Package cloudflarefake is a local stand-in for Cloudflare's v4 DNS-records API, used by
// tests because the real API cannot be reached from test machines. It follows the
// documented behaviour: bearer-token auth with per-token permissions, zone lookup by name,
// record list with filters and pagination, create, patch, put, delete, and the
// {success, errors, messages, result, result_info} envelope with Cloudflare's error codes.
package cloudflarefake

import (
	"encoding/json"
	"fmt"
	"net"
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

// Perms are an API token's permissions, named as in Cloudflare's token editor.
type Perms struct {
	ZoneRead bool // Zone / Zone / Read
	DNSRead  bool // Zone / DNS / Read
	DNSEdit  bool // Zone / DNS / Edit
}

// Record is one DNS record as the API stores it (Name is fully qualified, no trailing dot).
type Record struct {
	ID       string    `json:"id"`
	ZoneID   string    `json:"zone_id"`
	ZoneName string    `json:"zone_name"`
	Type     string    `json:"type"`
	Name     string    `json:"name"`
	Content  string    `json:"content"`
	TTL      int       `json:"ttl"`
	Proxied  bool      `json:"proxied"`
	Created  time.Time `json:"created_on"`
	Modified time.Time `json:"modified_on"`
}

type zone struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Server is the fake API. Its zero value is not usable; call New.
type Server struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]Perms
	zones  []zone
	recs   []*Record
	nextID int
	// Requests lists "METHOD path" of every request, for tests to inspect.
	requests []string
}

// New starts a fake with the given zones (e.g. "example.com") and tokens.
func New(zones []string, tokens map[string]Perms) *Server {
	s := &Server{tokens: tokens}
	for i, z := range zones {
		s.zones = append(s.zones, zone{ID: fmt.Sprintf("%032x", i+1), Name: strings.TrimSuffix(z, ".")})
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that sends requests meant for the real API host to the fake.
func (s *Server) Client() *http.Client { return fakeapi.Client(s.srv, "api.cloudflare.com") }

// Records returns a copy of the records of zone (name without trailing dot).
func (s *Server) Records(zoneName string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.recs {
		if r.ZoneName == strings.TrimSuffix(zoneName, ".") {
			out = append(out, *r)
		}
	}
	return out
}

// Add inserts a record directly, as if made in the dashboard.
func (s *Server) Add(zoneName, typ, name, content string, ttl int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneByName(zoneName)
	s.nextID++
	s.recs = append(s.recs, &Record{ID: fmt.Sprintf("rec%d", s.nextID), ZoneID: z.ID, ZoneName: z.Name, Type: typ,
		Name: fqdn(name, z.Name), Content: content, TTL: ttl, Created: time.Now(), Modified: time.Now()})
}

// Requests returns the requests served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *Server) zoneByName(n string) *zone {
	for i := range s.zones {
		if strings.EqualFold(s.zones[i].Name, strings.TrimSuffix(n, ".")) {
			return &s.zones[i]
		}
	}
	return nil
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

func reply(w http.ResponseWriter, status int, result any, info *resultInfo, errs ...apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if errs == nil {
		errs = []apiError{}
	}
	body := map[string]any{"success": len(errs) == 0, "errors": errs, "messages": []any{}, "result": result}
	if info != nil {
		body["result_info"] = info
	}
	json.NewEncoder(w).Encode(body)
}

func fqdn(name, zoneName string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case name == "@" || name == "" || name == zoneName:
		return zoneName
	case strings.HasSuffix(name, "."+zoneName):
		return name
	}
	return name + "." + zoneName
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") {
		reply(w, http.StatusBadRequest, nil, nil, apiError{6003, "Invalid request headers"})
		return
	}
	perms, ok := s.tokens[strings.TrimPrefix(auth, "Bearer ")]
	if !ok {
		reply(w, http.StatusBadRequest, nil, nil, apiError{1000, "Invalid API Token"})
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/client/v4")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	denied := func() { reply(w, http.StatusForbidden, nil, nil, apiError{10000, "Authentication error"}) }
	switch {
	case len(parts) == 1 && parts[0] == "zones" && r.Method == http.MethodGet:
		// A token without Zone Read sees no zones (the API filters by token scope).
		var out []zone
		name := strings.TrimSuffix(r.URL.Query().Get("name"), ".")
		for _, z := range s.zones {
			if perms.ZoneRead && (name == "" || strings.EqualFold(z.Name, name)) {
				out = append(out, z)
			}
		}
		if out == nil {
			out = []zone{}
		}
		reply(w, http.StatusOK, out, &resultInfo{Page: 1, PerPage: 20, Count: len(out), TotalCount: len(out), TotalPages: 1})
		return
	case len(parts) >= 3 && parts[0] == "zones" && parts[2] == "dns_records":
	default:
		reply(w, http.StatusNotFound, nil, nil, apiError{7003, "Could not route to " + r.URL.Path + ", perhaps your object identifier is invalid?"})
		return
	}
	var z *zone
	for i := range s.zones {
		if s.zones[i].ID == parts[1] {
			z = &s.zones[i]
		}
	}
	if z == nil {
		reply(w, http.StatusNotFound, nil, nil, apiError{7003, "Could not route to " + r.URL.Path + ", perhaps your object identifier is invalid?"})
		return
	}
	if r.Method == http.MethodGet && !perms.DNSRead && !perms.DNSEdit || r.Method != http.MethodGet && !perms.DNSEdit {
		denied()
		return
	}
	if len(parts) == 3 {
		switch r.Method {
		case http.MethodGet:
			s.list(w, r, z)
		case http.MethodPost:
			s.write(w, r, z, nil)
		default:
			reply(w, http.StatusMethodNotAllowed, nil, nil, apiError{10405, "Method not allowed"})
		}
		return
	}
	idx := slices.IndexFunc(s.recs, func(x *Record) bool { return x.ID == parts[3] && x.ZoneID == z.ID })
	if idx < 0 {
		reply(w, http.StatusNotFound, nil, nil, apiError{81044, "Record does not exist."})
		return
	}
	switch r.Method {
	case http.MethodGet:
		reply(w, http.StatusOK, s.recs[idx], nil)
	case http.MethodPatch, http.MethodPut:
		s.write(w, r, z, s.recs[idx])
	case http.MethodDelete:
		id := s.recs[idx].ID
		s.recs = slices.Delete(s.recs, idx, idx+1)
		reply(w, http.StatusOK, map[string]string{"id": id}, nil)
	default:
		reply(w, http.StatusMethodNotAllowed, nil, nil, apiError{10405, "Method not allowed"})
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, z *zone) {
	q := r.URL.Query()
	var match []*Record
	for _, rec := range s.recs {
		if rec.ZoneID != z.ID ||
			q.Get("type") != "" && rec.Type != q.Get("type") ||
			q.Get("name") != "" && rec.Name != fqdn(q.Get("name"), z.Name) ||
			q.Has("content.exact") && rec.Content != q.Get("content.exact") ||
			q.Has("content.contains") && !strings.Contains(rec.Content, q.Get("content.contains")) {
			continue
		}
		match = append(match, rec)
	}
	page, per := atoi(q.Get("page"), 1), atoi(q.Get("per_page"), 100)
	if page < 1 || per < 5 || per > 5000000 {
		reply(w, http.StatusBadRequest, nil, nil, apiError{1004, "DNS Validation Error"})
		return
	}
	lo, hi := min((page-1)*per, len(match)), min(page*per, len(match))
	out := match[lo:hi]
	if out == nil {
		out = []*Record{}
	}
	reply(w, http.StatusOK, out, &resultInfo{Page: page, PerPage: per, Count: len(out), TotalCount: len(match), TotalPages: (len(match) + per - 1) / per})
}

func atoi(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// write handles POST (old == nil), PATCH (only given fields change) and PUT.
func (s *Server) write(w http.ResponseWriter, r *http.Request, z *zone, old *Record) {
	var in struct {
		Type    string `json:"type"`
		Name    string `json:"name"`
		Content string `json:"content"`
		TTL     *int   `json:"ttl"`
		Proxied *bool  `json:"proxied"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		reply(w, http.StatusBadRequest, nil, nil, apiError{9207, "Request body is invalid."})
		return
	}
	rec := Record{ZoneID: z.ID, ZoneName: z.Name, TTL: 1, Created: time.Now()}
	if old != nil && r.Method == http.MethodPatch {
		rec = *old
	}
	if in.Type != "" {
		rec.Type = in.Type
	}
	if in.Name != "" {
		rec.Name = fqdn(in.Name, z.Name)
	}
	if in.Content != "" {
		rec.Content = in.Content
	}
	if in.TTL != nil {
		rec.TTL = *in.TTL
	}
	if in.Proxied != nil {
		rec.Proxied = *in.Proxied
	}
	if rec.Type == "" || rec.Name == "" || rec.Content == "" {
		reply(w, http.StatusBadRequest, nil, nil, apiError{9000, "DNS name, type and content are required"})
		return
	}
	if rec.TTL != 1 && (rec.TTL < 60 || rec.TTL > 86400) {
		reply(w, http.StatusBadRequest, nil, nil, apiError{9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."})
		return
	}
	if rec.Type == "A" || rec.Type == "AAAA" {
		a, err := netip.ParseAddr(rec.Content)
		if err != nil || (rec.Type == "A") != a.Is4() || net.ParseIP(rec.Content) == nil {
			code, fam := 9005, "IPv4"
			if rec.Type == "AAAA" {
				code, fam = 9006, "IPv6"
			}
			reply(w, http.StatusBadRequest, nil, nil, apiError{code, fmt.Sprintf("Content for %s record is invalid. Must be a valid %s address.", rec.Type, fam)})
			return
		}
	}
	for _, x := range s.recs {
		if x != old && x.ZoneID == z.ID && x.Type == rec.Type && x.Name == rec.Name && x.Content == rec.Content {
			reply(w, http.StatusBadRequest, nil, nil, apiError{81058, "An identical record already exists."})
			return
		}
	}
	rec.Modified = time.Now()
	if old != nil {
		rec.ID = old.ID
		*old = rec
		reply(w, http.StatusOK, old, nil)
		return
	}
	s.nextID++
	rec.ID = fmt.Sprintf("rec%d", s.nextID)
	s.recs = append(s.recs, &rec)
	reply(w, http.StatusOK, &rec, nil)
}
