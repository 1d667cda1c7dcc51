package notify

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// A body template is text with placeholders: {{name}} is one of the Event's values (see
// fields), escaped for the body's kind: inside a JSON body (one that starts with { or [) as
// the inside of a JSON string, inside a form body (anything else) as a URL query value.
// {{name|json}}, {{name|url}} and {{name|raw}} choose the escaping explicitly (names:
// fieldNames). Nothing
// else is special, so a template needs no text/template (which the binary does not link).

// Escapings of a placeholder's value.
const (
	escAuto = iota // the body's kind decides
	escJSON
	escURL
	escRaw
)

var escapings = [...]string{"", "json", "url", "raw"}

// template is a parsed body: literal text and placeholders in turn.
type template struct {
	segs []segment
	json bool // the body is JSON (it starts with { or [)
	auto int  // the escaping of a placeholder that names none
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
	t := &template{json: strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "["), auto: escURL}
	if t.json {
		t.auto = escJSON
	}
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
			return nil, errors.New(strconv.Quote(s[i:min(len(s), i+20)]) + " has no closing }}")
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
	name, esc, _ := strings.Cut(p, "|")
	seg := segment{field: index(fieldNames[:], strings.TrimSpace(name)), esc: index(escapings[:], strings.TrimSpace(esc))}
	if seg.field < 0 {
		return seg, errors.New("unknown placeholder {{" + p + "}} (known: " + strings.Join(fieldNames[:], ", ") + ")")
	}
	if seg.esc < 0 {
		return seg, errors.New("unknown escaping in {{" + p + "}} (known: json, url, raw)")
	}
	return seg, nil
}

// index is the position of s in list, or -1.
func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// render fills the template with an event's values.
func (t *template) render(vals *[len(fieldNames)]string) string {
	var b strings.Builder
	for _, s := range t.segs {
		if s.field < 0 {
			b.WriteString(s.lit)
			continue
		}
		v := vals[s.field]
		esc := s.esc
		if esc == escAuto {
			esc = t.auto
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
