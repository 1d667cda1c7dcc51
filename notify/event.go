package notify

import (
	"fmt"
	"strings"
	"time"
)

// Event is what a webhook is told, and the JSON body it gets without a template. The
// agent fills the kind and what the kind has; Notify fills Time, Host, Title and Message.
type Event struct {
	Event   string    `json:"event"` // one of Kinds
	Time    time.Time `json:"time"`
	Host    string    `json:"host"` // this box's host name
	Title   string    `json:"title"`
	Message string    `json:"message"` // one line for people

	Record string `json:"record,omitempty"` // fully qualified DNS name
	Type   string `json:"type,omitempty"`   // A or AAAA
	Old    string `json:"old,omitempty"`    // address before ("" when there was none)
	New    string `json:"new,omitempty"`    // address now ("" when none is left)

	Names   []string  `json:"names,omitempty"`  // certificate names
	Expires time.Time `json:"expires,omitzero"` // certificate expiry (the new one, or the one failing to renew)

	Part  string `json:"part,omitempty"` // the failing part
	Error string `json:"error,omitempty"`
}

// describe fills Title and Message from the rest.
func (e *Event) describe() {
	or := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	names := strings.Join(e.Names, ", ")
	switch e.Event {
	case AddressChanged:
		e.Title = "address changed"
		e.Message = fmt.Sprintf("%s %s: address changed from %s to %s", e.Record, e.Type, or(e.Old), or(e.New))
	case RecordUpdated:
		e.Title = "DNS record updated"
		e.Message = fmt.Sprintf("%s %s now points at %s (was %s)", e.Record, e.Type, e.New, or(e.Old))
	case RecordFailing:
		e.Title = "DNS record update failing"
		e.Message = fmt.Sprintf("%s %s cannot be set to %s: %s", e.Record, e.Type, e.New, e.Error)
	case CertRenewed:
		e.Title = "certificate renewed"
		e.Message = fmt.Sprintf("new certificate for %s, valid until %s", names, fmtExpires(e))
	case CertFailing:
		e.Title = "certificate renewal failing"
		if e.Expires.IsZero() {
			e.Message = fmt.Sprintf("no certificate for %s yet, ordering one failed: %s", names, e.Error)
		} else {
			e.Message = fmt.Sprintf("the certificate for %s expires %s and renewing it failed: %s", names, fmtExpires(e), e.Error)
		}
	case PartFailing:
		e.Title = e.Part + " failing"
		e.Message = fmt.Sprintf("%s keeps failing and restarting: %s", e.Part, e.Error)
	}
	e.Title = "edgerelay on " + e.Host + ": " + e.Title
}

func fmtTime(e *Event) string { return e.Time.Format(time.RFC3339) }

func fmtExpires(e *Event) string {
	if e.Expires.IsZero() {
		return ""
	}
	return e.Expires.UTC().Format(time.RFC3339)
}
