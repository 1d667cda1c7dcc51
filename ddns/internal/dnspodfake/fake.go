// Package dnspodfake is a local stand-in for Tencent Cloud DNSPod's API 3.0 (version
// 2021-03-23), used by tests because the real API cannot be reached from test machines. It
// follows Tencent's documentation: every request is a JSON POST whose TC3-HMAC-SHA256
// signature is recomputed here from the request as received and checked (sign.go), with
// the documented errors for a bad signature, an unknown key, a stale timestamp and a key
// without permission; DescribeRecordList with Subdomain/RecordType filters, Offset/Limit
// pagination and ResourceNotFound.NoDataOfRecord for an empty list; CreateRecord,
// ModifyRecord and DeleteRecord with their parameter checks, the plan's minimum TTL, and
// the {"Response": {..., "RequestId"}} / {"Response": {"Error": {Code, Message}}} envelope.
//
// Sources: https://cloud.tencent.com/document/api/1427/56189 (signature v3),
// https://cloud.tencent.com/document/api/1427/56166 (DescribeRecordList) with the other
// record APIs beside it, https://cloud.tencent.com/document/api/1427/56192 (error codes);
// English: https://www.tencentcloud.com/document/api/1157/51290.
package dnspodfake

import (
	"encoding/json"
	"fmt"
	"io"
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

// Key is an API key (SecretId → SecretKey) and whether its CAM policy allows DNSPod.
type Key struct {
	SecretKey string
	Allowed   bool
}

// Record is one DNS record as DNSPod stores it (Name relative to the domain, "@" for the apex).
type Record struct {
	ID    uint64
	Name  string
	Type  string
	Value string
	TTL   uint64
	MX    uint64
	Line  string
}

// Server is the fake API; build it with New.
type Server struct {
	srv    *httptest.Server
	mu     sync.Mutex
	keys   map[string]Key
	recs   map[string][]*Record // domain → records
	minTTL uint64
	nextID uint64
	calls  []string
}

// New starts a fake holding domains (each with its two NS records, as DNSPod creates them)
// and accepting keys. minTTL is the plan's smallest TTL (600 on the free plan).
func New(domains []string, keys map[string]Key, minTTL uint64) *Server {
	s := &Server{keys: keys, recs: map[string][]*Record{}, minTTL: minTTL, nextID: 1000}
	for _, d := range domains {
		s.recs[d] = nil
		s.Add(d, "NS", "@", "f1g1ns1.dnspod.net.", 86400)
		s.Add(d, "NS", "@", "f1g1ns2.dnspod.net.", 86400)
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that sends requests meant for the real API host to the fake;
// the Host header (signed, for DNSPod) stays the real one.
func (s *Server) Client() *http.Client { return fakeapi.Client(s.srv, "dnspod.tencentcloudapi.com") }

// Add inserts a record on the default line directly, as if made in the console.
func (s *Server) Add(domain, typ, name, value string, ttl uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.recs[domain] = append(s.recs[domain], &Record{ID: s.nextID, Name: name, Type: typ, Value: value, TTL: ttl, Line: "默认"})
}

// AddOnLine inserts a record on a split-horizon line (e.g. "电信").
func (s *Server) AddOnLine(domain, typ, name, value, line string) {
	s.Add(domain, typ, name, value, 600)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.recs[domain]
	l[len(l)-1].Line = line
}

// Records returns a copy of the domain's records.
func (s *Server) Records(domain string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.recs[domain] {
		out = append(out, *r)
	}
	return out
}

// Calls returns the actions served so far, each as "Action" or "Action: ErrorCode".
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// apiError is an error answer: HTTP 200 with Response.Error, as the API sends it.
type apiError struct{ code, msg string }

func errorf(code, format string, args ...any) *apiError {
	return &apiError{code, fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("fake-%d", time.Now().UnixNano())
	resp, aerr := s.handle(r)
	action := r.Header.Get("X-TC-Action")
	s.mu.Lock()
	if aerr != nil {
		s.calls = append(s.calls, action+": "+aerr.code)
	} else {
		s.calls = append(s.calls, action)
	}
	s.mu.Unlock()
	if aerr != nil {
		resp = map[string]any{"Error": map[string]string{"Code": aerr.code, "Message": aerr.msg}}
	}
	resp["RequestId"] = reqID
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"Response": resp})
}

func (s *Server) handle(r *http.Request) (map[string]any, *apiError) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, errorf("InvalidParameter", "API 3.0 takes POST / (got %s %s)", r.Method, r.URL.Path)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, errorf("InternalError", "reading the body: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, errorf("InvalidParameter", "Content-Type %q: JSON bodies need application/json", ct)
	}
	if aerr := s.authenticate(r, body); aerr != nil {
		return nil, aerr
	}
	if v := r.Header.Get("X-TC-Version"); v != "2021-03-23" {
		return nil, errorf("NoSuchVersion", "The API version `%s` does not exist.", v)
	}
	var params map[string]any
	if err := json.Unmarshal(body, &params); err != nil {
		return nil, errorf("InvalidParameter", "the body is not a JSON object: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch action := r.Header.Get("X-TC-Action"); action {
	case "DescribeRecordList":
		return s.describeRecordList(params)
	case "CreateRecord":
		return s.writeRecord(params, false)
	case "ModifyRecord":
		return s.writeRecord(params, true)
	case "DeleteRecord":
		return s.deleteRecord(params)
	default:
		return nil, errorf("InvalidAction", "The action `%s` is not supported by the fake.", action)
	}
}

// params reads the documented parameters of one action; anything else is UnknownParameter.
type params struct {
	m    map[string]any
	aerr *apiError
}

func (p *params) str(name string, required bool) string {
	v, ok := p.m[name]
	delete(p.m, name)
	if !ok {
		if required && p.aerr == nil {
			p.aerr = errorf("MissingParameter", "The request is missing a required parameter `%s`.", name)
		}
		return ""
	}
	s, isStr := v.(string)
	if !isStr && p.aerr == nil {
		p.aerr = errorf("InvalidParameter", "`%s` must be a string.", name)
	}
	return s
}

func (p *params) uint(name string, required bool, def uint64) uint64 {
	v, ok := p.m[name]
	delete(p.m, name)
	if !ok {
		if required && p.aerr == nil {
			p.aerr = errorf("MissingParameter", "The request is missing a required parameter `%s`.", name)
		}
		return def
	}
	f, isNum := v.(float64)
	if (!isNum || f < 0 || f != float64(uint64(f))) && p.aerr == nil {
		p.aerr = errorf("InvalidParameter", "`%s` must be an unsigned integer.", name)
	}
	return uint64(f)
}

func (p *params) done() *apiError {
	if p.aerr == nil && len(p.m) > 0 {
		for k := range p.m {
			return errorf("UnknownParameter", "The parameter `%s` is not recognized.", k)
		}
	}
	return p.aerr
}

func (s *Server) domain(name string) ([]*Record, *apiError) {
	recs, ok := s.recs[name]
	if !ok {
		return nil, errorf("InvalidParameterValue.DomainNotExists", "当前域名有误，请返回重新操作。")
	}
	return recs, nil
}

func (s *Server) describeRecordList(m map[string]any) (map[string]any, *apiError) {
	p := &params{m: m}
	domain := p.str("Domain", true)
	sub := p.str("Subdomain", false)
	typ := p.str("RecordType", false)
	offset := p.uint("Offset", false, 0)
	limit := p.uint("Limit", false, 100)
	if aerr := p.done(); aerr != nil {
		return nil, aerr
	}
	if limit == 0 || limit > 3000 {
		return nil, errorf("InvalidParameterValue.LimitInvalid", "分页长度数量错误。")
	}
	recs, aerr := s.domain(domain)
	if aerr != nil {
		return nil, aerr
	}
	var match []*Record
	subs := map[string]bool{}
	for _, r := range recs {
		if (sub == "" || strings.EqualFold(r.Name, sub)) && (typ == "" || r.Type == typ) {
			match = append(match, r)
			subs[r.Name] = true
		}
	}
	if len(match) == 0 {
		return nil, errorf("ResourceNotFound.NoDataOfRecord", "记录列表为空。")
	}
	total := len(match)
	page := match[min(int(offset), total):min(int(offset+limit), total)]
	list := make([]map[string]any, 0, len(page))
	for _, r := range page {
		lineID := "0"
		if r.Line != "默认" {
			lineID = "10=0"
		}
		list = append(list, map[string]any{
			"RecordId": r.ID, "Value": r.Value, "Status": "ENABLE", "UpdatedOn": "2026-01-01 00:00:00",
			"Name": r.Name, "Line": r.Line, "LineId": lineID, "Type": r.Type, "Weight": nil,
			"MonitorStatus": "", "Remark": "", "TTL": r.TTL, "MX": r.MX, "DefaultNS": r.Type == "NS",
		})
	}
	return map[string]any{
		"RecordCountInfo": map[string]any{"SubdomainCount": len(subs), "ListCount": len(list), "TotalCount": total},
		"RecordList":      list,
	}, nil
}

func (s *Server) writeRecord(m map[string]any, modify bool) (map[string]any, *apiError) {
	p := &params{m: m}
	domain := p.str("Domain", true)
	typ := p.str("RecordType", true)
	line := p.str("RecordLine", true)
	value := p.str("Value", true)
	sub := p.str("SubDomain", false)
	ttl := p.uint("TTL", false, 600)
	mx := p.uint("MX", false, 0)
	var id uint64
	if modify {
		id = p.uint("RecordId", true, 0)
	}
	if aerr := p.done(); aerr != nil {
		return nil, aerr
	}
	if sub == "" {
		sub = "@"
	}
	recs, aerr := s.domain(domain)
	if aerr != nil {
		return nil, aerr
	}
	if line != "默认" && line != "电信" && line != "联通" {
		return nil, errorf("InvalidParameter.RecordLineInvalid", "记录线路错误。")
	}
	if aerr := checkValue(typ, value, mx); aerr != nil {
		return nil, aerr
	}
	if ttl < 1 || ttl > 604800 || ttl < s.minTTL {
		return nil, errorf("LimitExceeded.RecordTtlLimit", "记录的TTL值超出了限制。")
	}
	var target *Record
	for _, r := range recs {
		if modify && r.ID == id {
			target = r
			continue
		}
		if strings.EqualFold(r.Name, sub) && r.Type == typ && r.Value == value && r.Line == line {
			return nil, errorf("InvalidParameter.DomainRecordExist", "记录已经存在，无需再次添加。")
		}
	}
	if modify && target == nil {
		return nil, errorf("InvalidParameter.RecordIdInvalid", "记录编号错误。")
	}
	if !modify {
		s.nextID++
		target = &Record{ID: s.nextID}
		s.recs[domain] = append(recs, target)
	}
	target.Name, target.Type, target.Value, target.TTL, target.MX, target.Line = strings.ToLower(sub), typ, value, ttl, mx, line
	return map[string]any{"RecordId": target.ID}, nil
}

func checkValue(typ, value string, mx uint64) *apiError {
	switch typ {
	case "A", "AAAA":
		a, err := netip.ParseAddr(value)
		if err != nil || a.Is4() != (typ == "A") {
			return errorf("InvalidParameter.RecordValueInvalid", "记录值有误，请修改后再操作。")
		}
	case "TXT", "CNAME", "NS":
		if value == "" || len(value) > 512 {
			return errorf("InvalidParameter.RecordValueLengthInvalid", "解析记录值过长。")
		}
	case "MX":
		if mx < 1 || mx > 20 {
			return errorf("InvalidParameter.MxInvalid", "MX优先级错误。")
		}
	default:
		return errorf("InvalidParameter.RecordTypeInvalid", "记录类型错误。")
	}
	return nil
}

func (s *Server) deleteRecord(m map[string]any) (map[string]any, *apiError) {
	p := &params{m: m}
	domain := p.str("Domain", true)
	id := p.uint("RecordId", true, 0)
	if aerr := p.done(); aerr != nil {
		return nil, aerr
	}
	recs, aerr := s.domain(domain)
	if aerr != nil {
		return nil, aerr
	}
	for i, r := range recs {
		if r.ID == id {
			s.recs[domain] = append(recs[:i], recs[i+1:]...)
			return map[string]any{}, nil
		}
	}
	return nil, errorf("InvalidParameter.RecordIdInvalid", "记录编号错误。")
}

// authenticate checks the TC3-HMAC-SHA256 Authorization header against the request.
func (s *Server) authenticate(r *http.Request, body []byte) *apiError {
	auth := r.Header.Get("Authorization")
	a, ok := parseAuthorization(auth)
	if !ok {
		return errorf("AuthFailure.InvalidAuthorization", "Authorization %q is not TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…", auth)
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		return errorf("MissingParameter", "The request is missing a required parameter `Timestamp`.")
	}
	if d := time.Since(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errorf("AuthFailure.SignatureExpire", "Signature expired. Timestamp and server time cannot differ by more than five minutes.")
	}
	key, known := s.keys[a.secretID]
	if !known {
		return errorf("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct.")
	}
	if a.date != time.Unix(ts, 0).UTC().Format("2006-01-02") || a.service != "dnspod" {
		return errorf("AuthFailure.SignatureFailure", "The credential scope %s/%s does not match the timestamp and service.", a.date, a.service)
	}
	if !slices.Contains(a.signed, "content-type") || !slices.Contains(a.signed, "host") {
		return errorf("AuthFailure.SignatureFailure", "SignedHeaders must include content-type and host.")
	}
	hdrs := map[string]string{}
	for _, h := range a.signed {
		if h == "host" {
			hdrs[h] = r.Host
		} else {
			hdrs[h] = r.Header.Get(h)
		}
	}
	_, _, want := Sign(key.SecretKey, a.service, ts, hdrs, a.signed, body)
	if a.signature != want {
		return errorf("AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct.")
	}
	if !key.Allowed {
		return errorf("AuthFailure.UnauthorizedOperation", "you are not authorized to perform operation (dnspod:%s)", r.Header.Get("X-TC-Action"))
	}
	return nil
}

type authorization struct {
	secretID, date, service, signature string
	signed                             []string
}

// parseAuthorization splits "TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request,
// SignedHeaders=a;b, Signature=HEX".
func parseAuthorization(s string) (authorization, bool) {
	var a authorization
	rest, ok := strings.CutPrefix(s, "TC3-HMAC-SHA256 ")
	if !ok {
		return a, false
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, false
		}
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 4 || cred[3] != "tc3_request" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return a, false
	}
	a.secretID, a.date, a.service, a.signature = cred[0], cred[1], cred[2], fields["Signature"]
	a.signed = strings.Split(fields["SignedHeaders"], ";")
	return a, true
}
