package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/libdns/libdns"
)

// duckDNSUpdateURL is DuckDNS's one API endpoint (www.duckdns.org/spec.jsp).
const duckDNSUpdateURL = "https://www.duckdns.org/update"

// duckDNS drives DuckDNS, a free dynamic DNS service: every name is <sub>.duckdns.org with
// one IPv4 address, one IPv6 address and one TXT value (served for every name under it, so
// _acme-challenge works), all set through a single update URL. Written against the
// documented API rather than github.com/libdns/duckdns, whose served versions are built for
// libdns v0.2 (records as a struct) and do not compile with libdns v1.1.1; its newer code
// also reads records through a hard-coded public resolver and clears both addresses when
// asked to delete one.
type duckDNS struct {
	token string
	hc    *http.Client
}

// ErrCannotList is returned by providers whose API cannot read records back; ddns then
// compares with what it last published.
var ErrCannotList = errors.New("the provider's API cannot list records")

// duckDNSName is the DuckDNS sub-name (what the API's domains parameter takes) a record
// belongs to: "home" for home.duckdns.org and every name under it, whether the zone is
// home.duckdns.org (ddns) or duckdns.org (what an SOA lookup finds for ACME).
func duckDNSName(name, zone string) (string, error) {
	fqdn := strings.ToLower(strings.TrimSuffix(libdns.AbsoluteName(name, zone), "."))
	rest, ok := strings.CutSuffix(fqdn, ".duckdns.org")
	if !ok || rest == "" {
		return "", fmt.Errorf("duckdns: %q is not under a DuckDNS name (<name>.duckdns.org)", fqdn)
	}
	return rest[strings.LastIndexByte(rest, '.')+1:], nil
}

// GetRecords cannot be answered: DuckDNS's only endpoint changes what it reads (an update
// without an address sets the caller's IPv4).
func (d *duckDNS) GetRecords(context.Context, string) ([]libdns.Record, error) {
	return nil, fmt.Errorf("duckdns: %w", ErrCannotList)
}

// SetRecords sets the name's IPv4, IPv6 or TXT value; every record names the zone itself or
// a name under it (DuckDNS answers the same for all).
func (d *duckDNS) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var done []libdns.Record
	for _, r := range recs {
		sub, err := duckDNSName(r.RR().Name, zone)
		if err != nil {
			return done, err
		}
		q := url.Values{}
		switch v := parsed(r).(type) {
		case libdns.Address:
			if v.IP.Is4() {
				q.Set("ip", v.IP.String())
			} else {
				q.Set("ipv6", v.IP.String()) // with ipv6 given, the API does not detect the IPv4
			}
		case libdns.TXT:
			q.Set("txt", v.Text)
		default:
			return done, fmt.Errorf("duckdns: record type %s is not supported (A, AAAA and TXT are)", r.RR().Type)
		}
		if err := d.update(ctx, sub, q); err != nil {
			return done, err
		}
		done = append(done, r)
	}
	return done, nil
}

// AppendRecords is SetRecords: DuckDNS keeps one value of each kind.
func (d *duckDNS) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return d.SetRecords(ctx, zone, recs)
}

// DeleteRecords clears the TXT value. Addresses cannot be deleted one at a time (the API's
// clear removes both), and ddns never needs to: a name holds one address per family.
func (d *duckDNS) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var done []libdns.Record
	for _, r := range recs {
		sub, err := duckDNSName(r.RR().Name, zone)
		if err != nil {
			return done, err
		}
		if _, ok := parsed(r).(libdns.TXT); !ok {
			return done, fmt.Errorf("duckdns: cannot delete a %s record alone (the API clears both addresses)", r.RR().Type)
		}
		if err := d.update(ctx, sub, url.Values{"txt": {""}, "clear": {"true"}}); err != nil {
			return done, err
		}
		done = append(done, r)
	}
	return done, nil
}

// update sends one update; DuckDNS answers OK or KO (a wrong token or a name that is not
// the account's).
func (d *duckDNS) update(ctx context.Context, sub string, q url.Values) error {
	q.Set("domains", sub)
	q.Set("token", d.token)
	q.Set("verbose", "true")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, duckDNSUpdateURL+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds the token
		}
		return fmt.Errorf("duckdns: update of %s.duckdns.org: %w", sub, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("duckdns: update of %s.duckdns.org: HTTP %d", sub, resp.StatusCode)
	case first == "KO":
		return fmt.Errorf("duckdns: update of %s.duckdns.org refused (KO): check the token and that %s is a domain of that account", sub, sub)
	case first != "OK":
		return fmt.Errorf("duckdns: update of %s.duckdns.org: unexpected answer %q", sub, trimTo(first, 80))
	}
	return nil
}

// parsed is a record as its typed form (libdns.Address, libdns.TXT, …) when it parses.
func parsed(r libdns.Record) libdns.Record {
	if rr, ok := r.(libdns.RR); ok {
		if p, err := rr.Parse(); err == nil {
			return p
		}
	}
	return r
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
