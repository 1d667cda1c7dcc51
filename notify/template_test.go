package notify

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

var sample = Event{Event: RecordFailing, Time: time.Date(2026, 12, 5, 2, 30, 0, 0, time.UTC), Host: "box",
	Record: "derp.example.test", Type: "AAAA", New: "2001:db8::2",
	Error: "API said \"no\"\nline two & <more>"}

func render(t *testing.T, body string) string {
	t.Helper()
	tpl, err := parseTemplate(body)
	if err != nil {
		t.Fatal(err)
	}
	ev := sample
	ev.describe()
	vals := ev.values()
	return tpl.render(&vals)
}

// TestTemplateJSONEscapes: in a JSON body a value with quotes and newlines stays one JSON
// string.
func TestTemplateJSONEscapes(t *testing.T) {
	out := render(t, `{"chat_id": 42, "text": "{{title}}\n{{message}}", "err": "{{error}}", "when": "{{time}}"}`)
	var v struct{ Text, Err, When string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if v.Err != sample.Error || v.When != "2026-12-05T02:30:00Z" ||
		v.Text != "edgerelay on box: DNS record update failing\nderp.example.test AAAA cannot be set to 2001:db8::2: "+sample.Error {
		t.Fatalf("got %+v", v)
	}
}

// TestTemplateFormEscapes: in a form body values are query-escaped.
func TestTemplateFormEscapes(t *testing.T) {
	out := render(t, "title={{title}}&desp={{error}}")
	q, err := url.ParseQuery(out)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("desp") != sample.Error || q.Get("title") != "edgerelay on box: DNS record update failing" {
		t.Fatalf("got %v from %s", q, out)
	}
}

func TestTemplateExplicitEscaping(t *testing.T) {
	if got := render(t, `{{record|raw}} {{ error | url }} {{type|json}}`); got != "derp.example.test API+said+%22no%22%0Aline+two+%26+%3Cmore%3E AAAA" {
		t.Fatalf("got %q", got)
	}
	if got := render(t, `{"a":"{{error|raw}}"}`); !strings.Contains(got, "\n") {
		t.Fatalf("raw escaped: %q", got)
	}
	if got := render(t, "no placeholders { } }}"); got != "no placeholders { } }}" {
		t.Fatalf("got %q", got)
	}
}

// TestKindsDescribed: every kind's message template parses and names what happened.
func TestKindsDescribed(t *testing.T) {
	for _, k := range kinds {
		if _, err := parseTemplate(k.msg); err != nil {
			t.Errorf("%s: %v", k.name, err)
		}
		ev := sample
		ev.Event = k.name
		ev.describe()
		if ev.Title != "edgerelay on box: "+k.title || strings.Contains(ev.Message, "{{") || ev.Message == "" {
			t.Errorf("%s: title %q, message %q", k.name, ev.Title, ev.Message)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	for body, want := range map[string]string{
		"{{recrod}}":     "unknown placeholder {{recrod}} (known: event, title",
		"a {{new":        `"{{new" has no closing }}`,
		"{{new|base64}}": "unknown escaping in {{new|base64}}",
		`{"t":"{{}}"}`:   "unknown placeholder {{}}",
	} {
		_, err := parseTemplate(body)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", body, err, want)
		}
	}
}

// FuzzTemplate: any body either parses or is refused with an error; a parsed JSON body
// that is valid JSON with each placeholder read as x stays valid JSON with the values
// filled in (a value cannot break out of its string).
func FuzzTemplate(f *testing.F) {
	f.Add(`{"text": "{{message}}"}`)
	f.Add("title={{title}}&desp={{message|url}}")
	f.Add("{{")
	f.Fuzz(func(t *testing.T, body string) {
		tpl, err := parseTemplate(body)
		if err != nil || tpl == nil {
			return
		}
		ev := sample
		ev.describe()
		vals := ev.values()
		out := tpl.render(&vals)
		if !tpl.json {
			return
		}
		var blank strings.Builder
		for _, s := range tpl.segs {
			switch {
			case s.field < 0:
				blank.WriteString(s.lit)
			case s.esc == escRaw:
				return
			default:
				blank.WriteString("x")
			}
		}
		if json.Valid([]byte(blank.String())) && !json.Valid([]byte(out)) {
			t.Fatalf("valid JSON template %q rendered invalid JSON %q", body, out)
		}
	})
}
