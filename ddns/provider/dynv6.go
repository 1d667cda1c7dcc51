package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/libdns/libdns"
)

// dynv6API is dynv6's REST API (github.com/dynv6/api-spec, openapi.yml).
const dynv6API = "https://dynv6.com/api/v2"

// dynv6 drives dynv6, a free dynamic DNS service whose names (home.dynv6.net, …) are zones
// of their own: the zone's own A and AAAA live on the zone (ipv4address, ipv6prefix), every
// other record in its records list. Written against the documented REST API rather than
// github.com/libdns/dynv6 v1.1.1, which builds with our libdns v1.1.1 but accepts only
// libdns.RR values (ddns passes libdns.Address, acme libdns.TXT: "unsupported record
// type"), cannot set the zone's own addresses, sends the TTL in nanoseconds, and keeps its
// HTTP client in a package variable with a fixed host.
type dynv6 struct {
	token string
	hc    *http.Client
}

type dynv6Zone struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	IPv4Address string `json:"ipv4address"`
	IPv6Prefix  string `json:"ipv6prefix"`
}

type dynv6Record struct {
	ID       int64  `json:"id,omitempty"`
	ZoneID   int64  `json:"zoneID,omitempty"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Data     string `json:"data"`
	Priority *int   `json:"priority,omitempty"`
}

// apexField is the zone field holding the zone's own address of rr's type, or "".
func apexField(rr libdns.RR) string {
	if rr.Name != "@" && rr.Name != "" {
		return ""
	}
	switch rr.Type {
	case "A":
		return "ipv4address"
	case "AAAA":
		return "ipv6prefix"
	}
	return ""
}

func (d *dynv6) zone(ctx context.Context, zone string) (*dynv6Zone, error) {
	name := strings.TrimSuffix(zone, ".")
	var z dynv6Zone
	if err := d.call(ctx, http.MethodGet, "/zones/by-name/"+url.PathEscape(name), nil, &z); err != nil {
		return nil, err
	}
	return &z, nil
}

func (d *dynv6) records(ctx context.Context, z *dynv6Zone) ([]dynv6Record, error) {
	var recs []dynv6Record
	err := d.call(ctx, http.MethodGet, fmt.Sprintf("/zones/%d/records", z.ID), nil, &recs)
	return recs, err
}

// GetRecords lists the zone's own addresses and its records.
func (d *dynv6) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	z, err := d.zone(ctx, zone)
	if err != nil {
		return nil, err
	}
	var out []libdns.Record
	if a, err := netip.ParseAddr(z.IPv4Address); err == nil {
		out = append(out, libdns.Address{Name: "@", IP: a})
	}
	if a, err := netip.ParseAddr(z.IPv6Prefix); err == nil { // a prefix ("…/64") is no address
		out = append(out, libdns.Address{Name: "@", IP: a})
	}
	recs, err := d.records(ctx, z)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		out = append(out, r.libdns())
	}
	return out, nil
}

func (r dynv6Record) libdns() libdns.Record {
	name := r.Name
	if name == "" {
		name = "@"
	}
	rr := libdns.RR{Name: name, Type: r.Type, Data: r.Data}
	if r.Priority != nil && r.Type == "MX" {
		rr.Data = strconv.Itoa(*r.Priority) + " " + r.Data
	}
	return parsed(rr)
}

// fromLibdns is a record as the API takes it (MX carries its priority apart).
func fromLibdns(r libdns.Record) dynv6Record {
	rr := r.RR()
	name := rr.Name
	if name == "@" {
		name = ""
	}
	out := dynv6Record{Name: name, Type: rr.Type, Data: rr.Data}
	if mx, ok := parsed(r).(libdns.MX); ok {
		p := int(mx.Preference)
		out.Data, out.Priority = mx.Target, &p
	}
	return out
}

// SetRecords makes each (name, type) hold exactly the given values: the zone's own address
// is set on the zone; other records are updated in place, added, and extras removed.
func (d *dynv6) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := d.zone(ctx, zone)
	if err != nil {
		return nil, err
	}
	var existing []dynv6Record
	listed := false
	used := map[int64]bool{}
	var done []libdns.Record
	for _, r := range recs {
		if f := apexField(r.RR()); f != "" {
			if err := d.setApex(ctx, z, f, r.RR().Data); err != nil {
				return done, err
			}
			done = append(done, r)
			continue
		}
		if !listed {
			if existing, err = d.records(ctx, z); err != nil {
				return done, err
			}
			listed = true
		}
		want := fromLibdns(r)
		path := fmt.Sprintf("/zones/%d/records", z.ID)
		method := http.MethodPost
		for _, e := range existing {
			if !used[e.ID] && e.Name == want.Name && e.Type == want.Type {
				used[e.ID] = true
				method, path = http.MethodPatch, fmt.Sprintf("%s/%d", path, e.ID)
				break
			}
		}
		if err := d.call(ctx, method, path, want, nil); err != nil {
			return done, err
		}
		done = append(done, r)
	}
	for _, e := range existing { // what the given records replaced
		if used[e.ID] {
			continue
		}
		for _, r := range recs {
			if w := fromLibdns(r); w.Name == e.Name && w.Type == e.Type {
				if err := d.call(ctx, http.MethodDelete, fmt.Sprintf("/zones/%d/records/%d", z.ID, e.ID), nil, nil); err != nil {
					return done, err
				}
				break
			}
		}
	}
	return done, nil
}

func (d *dynv6) setApex(ctx context.Context, z *dynv6Zone, field, value string) error {
	return d.call(ctx, http.MethodPatch, fmt.Sprintf("/zones/%d", z.ID), map[string]string{field: value}, nil)
}

// AppendRecords adds records; the zone's own address (one per family) is replaced.
func (d *dynv6) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := d.zone(ctx, zone)
	if err != nil {
		return nil, err
	}
	var done []libdns.Record
	for _, r := range recs {
		if f := apexField(r.RR()); f != "" {
			err = d.setApex(ctx, z, f, r.RR().Data)
		} else {
			err = d.call(ctx, http.MethodPost, fmt.Sprintf("/zones/%d/records", z.ID), fromLibdns(r), nil)
		}
		if err != nil {
			return done, err
		}
		done = append(done, r)
	}
	return done, nil
}

// DeleteRecords removes the records with the given name, type and (when set) value. The
// zone's own addresses cannot be removed, only replaced.
func (d *dynv6) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := d.zone(ctx, zone)
	if err != nil {
		return nil, err
	}
	existing, err := d.records(ctx, z)
	if err != nil {
		return nil, err
	}
	var done []libdns.Record
	for _, r := range recs {
		if apexField(r.RR()) != "" {
			return done, fmt.Errorf("dynv6: the zone's own %s address can be replaced, not deleted", r.RR().Type)
		}
		want := fromLibdns(r)
		for _, e := range existing {
			if e.Name == want.Name && e.Type == want.Type && (want.Data == "" || e.Data == want.Data) {
				if err := d.call(ctx, http.MethodDelete, fmt.Sprintf("/zones/%d/records/%d", z.ID, e.ID), nil, nil); err != nil {
					return done, err
				}
				done = append(done, e.libdns())
			}
		}
	}
	return done, nil
}

// call sends one API request with the token and decodes a JSON answer into out (if set).
func (d *dynv6) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, dynv6API+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("dynv6: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("dynv6: %s %s: HTTP 401: the HTTP token is not valid (dynv6.com/keys)", method, path)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("dynv6: %s %s: HTTP 403: the token may not change this zone", method, path)
	case resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/zones/by-name/"):
		return fmt.Errorf("dynv6: zone %s not found among the token's zones", strings.TrimPrefix(path, "/zones/by-name/"))
	case resp.StatusCode >= 300:
		return fmt.Errorf("dynv6: %s %s: HTTP %d%s", method, path, resp.StatusCode, dynv6Error(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("dynv6: %s %s: answer is not the expected JSON: %w", method, path, err)
		}
	}
	return nil
}

// dynv6Error renders the API's ErrorResponse ({"error": {name, message, fields}}).
func dynv6Error(b []byte) string {
	var e struct {
		Error struct {
			Name    string
			Message string
			Fields  []struct{ Name, Message string }
		}
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		return ""
	}
	msg := ": " + e.Error.Message
	for _, f := range e.Error.Fields {
		msg += "; " + f.Name + ": " + f.Message
	}
	return msg
}
