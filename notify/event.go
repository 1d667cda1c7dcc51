package notify

import (
	"strings"
	"time"
)

// Event is what a webhook is told, and the JSON body it gets without a template. The
// agent fills the kind and what the kind has; Notify fills Host, Title, Message, and Time
// when unset.
type Event struct {
	Event   string    `json:"event"` // AddressChanged, RecordUpdated, …
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

// kinds are the event kinds with their title and message, written as templates.
var kinds = [...]struct{ name, title, msg string }{
	{AddressChanged, "address changed", "{{record}} {{type}}: address changed from {{old}} to {{new}}"},
	{RecordUpdated, "DNS record updated", "{{record}} {{type}} now points at {{new}} (was {{old}})"},
	{RecordFailing, "DNS record update failing", "{{record}} {{type}} cannot be set to {{new}}: {{error}}"},
	{CertRenewed, "certificate renewed", "new certificate for {{names}}, valid until {{expires}}"},
	{CertFailing, "certificate renewal failing", "renewing the certificate for {{names}} (expiring: {{expires}}) failed: {{error}}"},
	{PartFailing, "part failing", "{{part}} keeps failing and restarting: {{error}}"},
}

// KindNames lists every event kind.
func KindNames() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	return names
}

// describe fills Title and Message from the rest.
func (e *Event) describe() {
	for _, k := range kinds {
		if k.name != e.Event {
			continue
		}
		v := e.values()
		for _, f := range []int{fOld, fNew, fExpires} {
			if v[f] == "" {
				v[f] = "none"
			}
		}
		t, _ := parseTemplate(k.msg) // the kinds' templates are tested
		t.auto = escRaw
		e.Title, e.Message = "edgerelay on "+e.Host+": "+k.title, t.render(&v)
	}
}

// Placeholders of a body template, in the order values returns them.
var fieldNames = [...]string{"event", "title", "message", "time", "host", "record", "type", "old", "new", "names", "expires", "part", "error"}

const (
	fOld     = 7
	fNew     = 8
	fExpires = 10
)

// values are e's values as text, in the order of fieldNames.
func (e *Event) values() [len(fieldNames)]string {
	exp := ""
	if !e.Expires.IsZero() {
		exp = e.Expires.UTC().Format(time.RFC3339)
	}
	return [...]string{e.Event, e.Title, e.Message, e.Time.Format(time.RFC3339), e.Host, e.Record, e.Type,
		e.Old, e.New, strings.Join(e.Names, ", "), exp, e.Part, e.Error}
}
