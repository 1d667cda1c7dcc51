package notify

import (
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Event kinds, the values of a webhook's events list and of Event.Event.
const (
	AddressChanged = "address_changed" // a record's source address changed
	RecordUpdated  = "record_updated"  // a DNS record was written
	RecordFailing  = "record_failing"  // writing a DNS record failed (first failure of a streak)
	CertRenewed    = "cert_renewed"    // a new certificate is in service
	CertFailing    = "cert_failing"    // an order failed and the certificate expires within 7 days (or there is none)
	PartFailing    = "part_failing"    // a part failed several times in a row
)

// Config is the notify section.
type Config struct {
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one receiver of events.
type Webhook struct {
	// URL is where events are POSTed; url_file reads it from a file (it often holds a token).
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// Events are the kinds sent to this webhook; empty sends every kind.
	Events []string `yaml:"events"`
	// Body is a template for services that want their own shape (see template.go); empty
	// sends the Event as JSON.
	Body string `yaml:"body"`
	// Headers are extra request headers, each "Name: value". A Content-Type here replaces
	// the one chosen from the body.
	Headers []string `yaml:"headers"`
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration `yaml:"timeout"`
}

// SetDefaults fills unset keys with their defaults.
func (c *Config) SetDefaults() {
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
	}
}

// Validate checks the section on its own; keys are relative to it.
func (c *Config) Validate() error {
	var ps field.Problems
	if len(c.Webhooks) == 0 {
		ps.Add("webhooks", "at least one webhook is needed (or remove the notify section)")
	}
	for i := range c.Webhooks {
		c.Webhooks[i].validate(&ps, field.Index("webhooks", i))
	}
	return ps.Err()
}

func (w *Webhook) validate(ps *field.Problems, p string) {
	switch {
	case w.URL == "":
		ps.Add(p+".url", "required: the http(s) URL events are POSTed to (or url_file)")
	case !field.IsURL(w.URL, "http", "https"):
		// Not the URL itself: it may hold a token.
		ps.Add(p+".url", "expected an http(s) URL with a host, got %s", Redact(w.URL))
	}
	for j, e := range w.Events {
		ps.OneOf(field.Index(p+".events", j), e, KindNames()...)
	}
	if _, err := parseTemplate(w.Body); err != nil {
		ps.Add(p+".body", "%v", err)
	}
	for j, h := range w.Headers {
		// Shown with none of it: the value may be a token.
		if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(h, "\r\n") {
			ps.Add(field.Index(p+".headers", j), `expected "Name: value" on one line`)
		}
	}
	if w.Timeout < time.Second || w.Timeout > 5*time.Minute {
		ps.Add(p+".timeout", "must be between 1s and 5m, got %v", w.Timeout)
	}
}
