package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// A body template is text with placeholders: {{name}} is one of the Event's values (see
// fields), escaped for the body's kind: inside a JSON body (one that starts with { or [) as
// the inside of a JSON string, inside a form body (anything else) as a URL query value.
// {{name|json}}, {{name|url}} and {{name|raw}} choose the escaping explicitly. Nothing
// else is special, so a template needs no text/template (which the binary does not link).

// fields are the placeholders and the Event values they stand for.
var fields = []struct {
	name string
	get  func(*Event) string
}{
	{"event", func(e *Event) string { return e.Event }},
	{"title", func(e *Event) string { return e.Title }},
	{"message", func(e *Event) string { return e.Message }},
	{"time", func(e *Event) string { return fmtTime(e) }},
	{"host", func(e *Event) string { return e.Host }},
	{"record", func(e *Event) string { return e.Record }},
	{"type", func(e *Event) string { return e.Type }},
	{"old", func(e *Event) string { return e.Old }},
	{"new", func(e *Event) string { return e.New }},
	{"names", func(e *Event) string { return strings.Join(e.Names, ", ") }},
	{"expires", func(e *Event) string { return fmtExpires(e) }},
	{"part", func(e *Event) string { return e.Part }},
	{"error", func(e *Event) string { return e.Error }},
}

// Escapings of a placeholder's value.
const (
	escAuto = iota // the body's kind decides
	escJSON
	escURL
	escRaw
)

var escapings = []string{"", "json", "url", "raw"}

// template is a parsed body: literal text and placeholders in turn.
type template struct {
	segs []segment
	json bool // the body is JSON (it starts with { or [)
}

type segment struct {
	lit   string
	field int // index in fields, -1 for a literal
	esc   int
}

// parseTemplate parses a body template ("" is no template: a nil *template).
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, nil
	}
	trimmed := strings.TrimSpace(s)
	t := &template{json: strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[")}
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			t.segs = append(t.segs, segment{lit: s, field: -1})
			break
		}
		if i > 0 {
			t.segs = append(t.segs, segment{lit: s[:i], field: -1})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("%q has no closing }}", s[i:min(len(s), i+20)])
		}
		seg, err := parsePlaceholder(s[i+2 : i+j])
		if err != nil {
			return nil, err
		}
		t.segs = append(t.segs, seg)
		s = s[i+j+2:]
	}
	return t, nil
}

// parsePlaceholder reads "name" or "name|escaping".
func parsePlaceholder(p string) (segment, error) {
	name, esc, _ := strings.Cut(strings.TrimSpace(p), "|")
	name, esc = strings.TrimSpace(name), strings.TrimSpace(esc)
	seg := segment{field: -1}
	for i, f := range fields {
		if f.name == name {
			seg.field = i
		}
	}
	if seg.field < 0 {
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		return seg, fmt.Errorf("unknown placeholder {{%s}} (known: %s)", p, strings.Join(names, ", "))
	}
	seg.esc = -1
	for i, e := range escapings {
		if e == esc {
			seg.esc = i
		}
	}
	if seg.esc < 0 {
		return seg, fmt.Errorf("unknown escaping %q in {{%s}} (known: json, url, raw)", esc, p)
	}
	return seg, nil
}

// render fills the template with ev's values.
func (t *template) render(ev *Event) string {
	var b strings.Builder
	for _, s := range t.segs {
		if s.field < 0 {
			b.WriteString(s.lit)
			continue
		}
		v := fields[s.field].get(ev)
		esc := s.esc
		if esc == escAuto {
			esc = escURL
			if t.json {
				esc = escJSON
			}
		}
		switch esc {
		case escJSON:
			q, _ := json.Marshal(v) // a string always marshals
			b.Write(q[1 : len(q)-1])
		case escURL:
			b.WriteString(url.QueryEscape(v))
		default:
			b.WriteString(v)
		}
	}
	return b.String()
}

// contentType is the body's type unless a header sets one.
func (t *template) contentType() string {
	if t == nil || t.json {
		return "application/json"
	}
	return "application/x-www-form-urlencoded"
}
