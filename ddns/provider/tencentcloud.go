package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libdns/libdns"
)

// tencentCloud drives Tencent Cloud DNSPod through its API 3.0 (version 2021-03-23):
// DescribeRecordList, CreateRecord, ModifyRecord and DeleteRecord, each a JSON POST signed
// with TC3-HMAC-SHA256 (tc3.go). libdns/tencentcloud could not be used: the module proxy
// refuses its version list, and the one version it serves (v1.0.0) is written against
// libdns v0.2 and does not build with libdns v1. Tencent's Go SDK would cost far more flash
// than these few calls. API reference: DNSPod API 3.0 "记录相关接口" (record APIs), e.g.
// DescribeRecordList at https://cloud.tencent.com/document/api/1427/56166, in English
// https://www.tencentcloud.com/document/api/1157/51290 and the other Record APIs beside it;
// error codes at https://cloud.tencent.com/document/api/1427/56192.
//
// Only records on the default line ("默认", line ID 0) are changed; records on DNSPod's
// split-horizon lines are listed but never modified or deleted.
type tencentCloud struct {
	secretID, secretKey string
	hc                  *http.Client
	now                 func() time.Time
}

const (
	dnspodHost    = "dnspod.tencentcloudapi.com"
	dnspodVersion = "2021-03-23"
	dnspodService = "dnspod"
	// dnspodDefaultLine is the name of the default line on the China site; its ID is "0".
	dnspodDefaultLine = "默认"
	// dnspodPage is the page size for DescribeRecordList (the API's maximum is 3000).
	dnspodPage = 3000
	// dnspodMinTTL is the smallest TTL DNSPod's free plan accepts; lower TTLs are raised to
	// it when the API refuses them (LimitExceeded.RecordTtlLimit).
	dnspodMinTTL = 600
)

func newTencentCloud(secretID, secretKey string, hc *http.Client) *tencentCloud {
	return &tencentCloud{secretID: secretID, secretKey: secretKey, hc: hc, now: time.Now}
}

// dnspodError is the API's error envelope: {"Response": {"Error": {"Code", "Message"}, "RequestId"}}.
type dnspodError struct {
	Action, Code, Message, RequestID string
}

func (e *dnspodError) Error() string {
	msg := fmt.Sprintf("tencentcloud %s: %s: %s", e.Action, e.Code, e.Message)
	if hint := dnspodHint(e.Code); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg + " [RequestId " + e.RequestID + "]"
}

// dnspodHint says what to fix for the errors a user can fix.
func dnspodHint(code string) string {
	switch code {
	case "AuthFailure.SecretIdNotFound", "AuthFailure.InvalidSecretId":
		return "check secret_id: the key may be deleted, disabled or mistyped"
	case "AuthFailure.SignatureFailure":
		return "check secret_key: it does not belong to secret_id"
	case "AuthFailure.SignatureExpire":
		return "this box's clock is more than 5 minutes off; check NTP"
	case "AuthFailure.UnauthorizedOperation", "UnauthorizedOperation", "OperationDenied.NoPermissionToOperateDomain":
		return "the key's CAM policy does not allow DNSPod record changes for this domain (e.g. QcloudDNSPodFullAccess)"
	case "InvalidParameterValue.DomainNotExists", "InvalidParameter.DomainInvalid":
		return "the zone is not a domain in this DNSPod account"
	}
	return ""
}

// call sends one API action and decodes its Response into out.
func (t *tencentCloud) call(ctx context.Context, action string, params, out any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+dnspodHost+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := t.now()
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Host", dnspodHost)
	req.Header.Set("X-TC-Action", action)
	req.Header.Set("X-TC-Version", dnspodVersion)
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("Authorization", tc3Authorization(t.secretID, t.secretKey, dnspodService, ts, req.Header,
		[]string{"content-type", "host", "x-tc-action"}, body))
	resp, err := t.hc.Do(req)
	if err != nil {
		return fmt.Errorf("tencentcloud %s: %w", action, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("tencentcloud %s: reading the answer: %w", action, err)
	}
	var env struct {
		Response json.RawMessage
	}
	var head struct {
		Error *struct {
			Code, Message string
		}
		RequestID string `json:"RequestId"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Response) == 0 {
		return fmt.Errorf("tencentcloud %s: HTTP %d with an unexpected answer %q", action, resp.StatusCode, truncateBytes(raw, 200))
	}
	if err := json.Unmarshal(env.Response, &head); err != nil {
		return fmt.Errorf("tencentcloud %s: %w", action, err)
	}
	if head.Error != nil {
		return &dnspodError{Action: action, Code: head.Error.Code, Message: head.Error.Message, RequestID: head.RequestID}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Response, out); err != nil {
		return fmt.Errorf("tencentcloud %s: decoding the answer: %w", action, err)
	}
	return nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// dnspodRecord is one RecordListItem of DescribeRecordList.
type dnspodRecord struct {
	RecordID uint64 `json:"RecordId"`
	Name     string `json:"Name"`
	Type     string `json:"Type"`
	Value    string `json:"Value"`
	TTL      uint64 `json:"TTL"`
	MX       uint64 `json:"MX"`
	Line     string `json:"Line"`
	LineID   string `json:"LineId"`
}

func (r dnspodRecord) defaultLine() bool {
	return r.LineID == "0" || r.Line == dnspodDefaultLine || r.Line == "Default"
}

// data is the record's value as libdns.RR.Data holds it.
func (r dnspodRecord) data() string {
	if r.Type == "MX" {
		return strconv.FormatUint(r.MX, 10) + " " + r.Value
	}
	return r.Value
}

func (r dnspodRecord) libdns() libdns.Record {
	rr := libdns.RR{Name: r.Name, Type: r.Type, TTL: time.Duration(r.TTL) * time.Second, Data: r.data()}
	if parsed, err := rr.Parse(); err == nil {
		return parsed
	}
	return rr
}

// list returns the records of domain, all of them or those of one name and type (either
// may be ""), following the pages.
func (t *tencentCloud) list(ctx context.Context, domain, name, typ string) ([]dnspodRecord, error) {
	var out []dnspodRecord
	// At most 100 pages (300,000 records): a bound against an answer that never ends.
	for offset, pages := 0, 0; pages < 100; pages++ {
		params := map[string]any{"Domain": domain, "Offset": offset, "Limit": dnspodPage}
		if name != "" {
			params["Subdomain"] = name
		}
		if typ != "" {
			params["RecordType"] = typ
		}
		var page struct {
			RecordCountInfo struct{ TotalCount int }
			RecordList      []dnspodRecord
		}
		err := t.call(ctx, "DescribeRecordList", params, &page)
		var de *dnspodError
		if errors.As(err, &de) && de.Code == "ResourceNotFound.NoDataOfRecord" {
			return out, nil // the API's answer for an empty list
		}
		if err != nil {
			return nil, err
		}
		for _, r := range page.RecordList {
			if r.Name != "" && r.Type != "" { // never act on an item the API sent half-empty
				out = append(out, r)
			}
		}
		offset += len(page.RecordList)
		if len(page.RecordList) < dnspodPage || offset >= page.RecordCountInfo.TotalCount {
			return out, nil
		}
	}
	return nil, fmt.Errorf("tencentcloud DescribeRecordList: domain %s has more than %d records", domain, len(out))
}

func dnspodDomain(zone string) string { return strings.TrimSuffix(zone, ".") }

func (t *tencentCloud) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	recs, err := t.list(ctx, dnspodDomain(zone), "", "")
	if err != nil {
		return nil, err
	}
	out := make([]libdns.Record, len(recs))
	for i, r := range recs {
		out[i] = r.libdns()
	}
	return out, nil
}

// write creates the record (id 0) or modifies record id to hold rr. A TTL under the plan's
// minimum is raised to dnspodMinTTL and the call repeated once.
func (t *tencentCloud) write(ctx context.Context, domain string, id uint64, line string, rr libdns.RR) (dnspodRecord, error) {
	value, mx := rr.Data, uint64(0)
	if rr.Type == "MX" {
		pref, target, ok := strings.Cut(rr.Data, " ")
		n, err := strconv.ParseUint(pref, 10, 16)
		if !ok || err != nil {
			return dnspodRecord{}, fmt.Errorf("MX record %q: expected \"preference target\"", rr.Data)
		}
		value, mx = target, n
	}
	ttl := uint64(rr.TTL / time.Second)
	if ttl == 0 {
		ttl = dnspodMinTTL
	}
	params := map[string]any{"Domain": domain, "SubDomain": rr.Name, "RecordType": rr.Type, "RecordLine": line, "Value": value, "TTL": ttl}
	if rr.Type == "MX" {
		params["MX"] = mx
	}
	action := "CreateRecord"
	if id != 0 {
		action = "ModifyRecord"
		params["RecordId"] = id
	}
	var res struct {
		RecordID uint64 `json:"RecordId"`
	}
	err := t.call(ctx, action, params, &res)
	var de *dnspodError
	if errors.As(err, &de) && de.Code == "LimitExceeded.RecordTtlLimit" && ttl < dnspodMinTTL {
		ttl = dnspodMinTTL
		params["TTL"] = ttl
		err = t.call(ctx, action, params, &res)
	}
	if err != nil {
		return dnspodRecord{}, err
	}
	if id == 0 {
		id = res.RecordID
	}
	return dnspodRecord{RecordID: id, Name: rr.Name, Type: rr.Type, Value: value, TTL: ttl, MX: mx, Line: line}, nil
}

func (t *tencentCloud) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var out []libdns.Record
	for _, r := range recs {
		w, err := t.write(ctx, dnspodDomain(zone), 0, dnspodDefaultLine, r.RR())
		if err != nil {
			return out, err
		}
		out = append(out, w.libdns())
	}
	return out, nil
}

// SetRecords makes each (name, type) in recs hold exactly the given values on the default
// line: records already right stay, others are modified in place (one ModifyRecord for a
// DDNS address change), created, or deleted. Not atomic: the API has no transactions.
func (t *tencentCloud) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	domain := dnspodDomain(zone)
	type key struct{ name, typ string }
	groups := map[key][]libdns.RR{}
	var order []key
	for _, r := range recs {
		rr := r.RR()
		k := key{strings.ToLower(rr.Name), rr.Type}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], rr)
	}
	var out []libdns.Record
	for _, k := range order {
		existing, err := t.list(ctx, domain, k.name, k.typ)
		if err != nil {
			return out, err
		}
		var spare []dnspodRecord // default-line records not (yet) matched by an input
		for _, e := range existing {
			if e.defaultLine() && strings.EqualFold(e.Name, k.name) && e.Type == k.typ {
				spare = append(spare, e)
			}
		}
		var todo []libdns.RR
		for _, rr := range groups[k] {
			i := slices.IndexFunc(spare, func(e dnspodRecord) bool {
				return e.data() == rr.Data && (rr.TTL == 0 || time.Duration(e.TTL)*time.Second == rr.TTL)
			})
			if i < 0 {
				todo = append(todo, rr)
				continue
			}
			out = append(out, spare[i].libdns())
			spare = append(spare[:i], spare[i+1:]...)
		}
		for _, rr := range todo {
			id, line := uint64(0), dnspodDefaultLine
			if len(spare) > 0 {
				id, line = spare[0].RecordID, spare[0].Line
				spare = spare[1:]
			}
			w, err := t.write(ctx, domain, id, line, rr)
			if err != nil {
				return out, err
			}
			out = append(out, w.libdns())
		}
		for _, e := range spare {
			if err := t.call(ctx, "DeleteRecord", map[string]any{"Domain": domain, "RecordId": e.RecordID}, nil); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// DeleteRecords removes the default-line records matching recs (an empty type or value, or
// a zero TTL, matches any).
func (t *tencentCloud) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	domain := dnspodDomain(zone)
	var out []libdns.Record
	for _, r := range recs {
		rr := r.RR()
		existing, err := t.list(ctx, domain, rr.Name, rr.Type)
		if err != nil {
			return out, err
		}
		for _, e := range existing {
			if !e.defaultLine() || !strings.EqualFold(e.Name, rr.Name) || (rr.Type != "" && e.Type != rr.Type) ||
				(rr.Data != "" && e.data() != rr.Data) || (rr.TTL != 0 && time.Duration(e.TTL)*time.Second != rr.TTL) {
				continue
			}
			if err := t.call(ctx, "DeleteRecord", map[string]any{"Domain": domain, "RecordId": e.RecordID}, nil); err != nil {
				return out, err
			}
			out = append(out, e.libdns())
		}
	}
	return out, nil
}
