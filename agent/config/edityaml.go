package config

import (
	"errors"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// editYAML sets s's key to items (nil: removes it) by splicing the file's text at the
// positions yaml.v3's node tree gives, so comments, key order, quoting and the keys not
// named stay as they were (and the binary needs yaml's decoder only, not its emitter). A
// new value is written on one line, a list in flow style ([a, b]).
func editYAML(text string, s Setting, items []string) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return "", err
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	var m, parent *yaml.Node // the mapping the key is in; the key above it (nil: the root)
	if len(doc.Content) > 0 {
		m = doc.Content[0]
	}
	path := strings.Split(s.Key, ".")
	indent := 0 // the column of m's keys in block style
	for i, p := range path {
		if m != nil && m.Kind != yaml.MappingNode {
			return "", errors.New(strings.Join(path[:i], ".") + " is not a mapping of keys")
		}
		var k, v *yaml.Node
		flow := m != nil && m.Style&yaml.FlowStyle != 0
		if m != nil {
			for j := 0; j+1 < len(m.Content); j += 2 {
				if m.Content[j].Value == p {
					k, v = m.Content[j], m.Content[j+1]
				}
			}
			if len(m.Content) > 0 {
				indent = m.Content[0].Column - 1
			}
		}
		switch {
		case k == nil && items == nil:
			return text, nil // removing what is not there
		case k == nil && flow: // `p: {rest: value}` before the closing brace
			at := spanEnd(text, offset(text, m), false) - 1 // the brace
			for strings.IndexByte(" \t\r\n", text[at-1]) >= 0 {
				at--
			}
			add := p + ": " + nested(path[i+1:], yamlValue(s.Kind, items, nil))
			if len(m.Content) > 0 {
				add = ", " + add
			}
			return text[:at] + add + text[at:], nil
		case k == nil: // block lines after the mapping's last line
			at := len(text)
			if m != nil {
				at = lineEnd(text, lastLine(m))
			} else if parent != nil {
				at = lineEnd(text, parent.Line)
			}
			add := ""
			for d, q := range path[i:] {
				add += spaces[:min(indent+2*d, len(spaces))] + q + ":"
				if d == len(path)-i-1 {
					add += " " + yamlValue(s.Kind, items, nil)
				}
				add += "\n"
			}
			return text[:at] + add + text[at:], nil
		case i < len(path)-1: // go down a level
			m, parent, indent = v, k, k.Column+1
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				m = nil // `ddns:` with nothing under it
			}
		case items == nil && flow: // remove `p: value` and one comma beside it
			from, to := offset(text, k), spanEnd(text, offset(text, v), true)
			if r := strings.TrimLeft(text[to:], " \t"); strings.HasPrefix(r, ",") {
				to = len(text) - len(strings.TrimLeft(r[1:], " \t"))
			} else {
				for from > 0 && (text[from-1] == ' ' || text[from-1] == '\t') {
					from--
				}
				if text[from-1] == ',' {
					from--
				}
			}
			return text[:from] + text[to:], nil
		case items == nil: // remove the key's lines
			return text[:lineEnd(text, k.Line-1)] + text[lineEnd(text, lastLine(v)):], nil
		case v.Kind != yaml.ScalarNode && v.Style&yaml.FlowStyle == 0 || v.Tag == "!!null" && v.Value == "":
			// a block list, or nothing: the new value on the key's line
			at := offset(text, k)
			at += strings.IndexByte(text[at:], ':') + 1
			return text[:at] + " " + yamlValue(s.Kind, items, nil) + "\n" + text[lineEnd(text, lastLine(v)):], nil
		default: // a scalar or a flow collection: its text replaced
			at := offset(text, v)
			return text[:at] + yamlValue(s.Kind, items, v) + text[spanEnd(text, at, flow):], nil
		}
	}
	return text, nil
}

const spaces = "                                "

// yamlValue writes items as YAML for a setting of kind: a list in flow style, a string
// plain when YAML reads it back as the same string, else quoted as old was (double quotes
// when old is nil or plain).
func yamlValue(kind string, items []string, old *yaml.Node) string {
	if kind == "list" {
		q := make([]string, len(items))
		for i, it := range items {
			q[i] = yamlValue("text", []string{it}, nil)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	v := items[0]
	var back any
	switch {
	case kind == "bool" || kind == "number":
		return v
	case old != nil && old.Style&yaml.SingleQuotedStyle != 0:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case (old == nil || old.Style&yaml.DoubleQuotedStyle == 0) && !strings.ContainsAny(v, ",[]{}#'\"") &&
		yaml.Unmarshal([]byte(v), &back) == nil && back == v:
		return v
	}
	return strconv.Quote(v)
}

// nested writes value under the keys of path in flow style: {a: {b: value}}.
func nested(path []string, value string) string {
	for i := len(path) - 1; i >= 0; i-- {
		value = "{" + path[i] + ": " + value + "}"
	}
	return value
}

// lastLine is the last line (1-based) of n's subtree.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

// lineEnd is the offset just past line n (1-based; 0 is the start of the text).
func lineEnd(text string, n int) int {
	at := 0
	for ; n > 0 && at < len(text); n-- {
		if i := strings.IndexByte(text[at:], '\n'); i >= 0 {
			at += i + 1
		} else {
			at = len(text)
		}
	}
	return at
}

// offset is where node n starts in text (yaml.v3 counts columns in runes).
func offset(text string, n *yaml.Node) int {
	at, col := lineEnd(text, n.Line-1), n.Column-1
	for i := range text[at:] {
		if col == 0 {
			return at + i
		}
		col--
	}
	return len(text)
}

// spanEnd is where the scalar or flow collection starting at text[start] ends. Inside a
// flow collection (flow) a plain scalar also ends at a comma or a closing bracket.
func spanEnd(text string, start int, flow bool) int {
	depth, quote := 0, byte(0)
	for i := start; i < len(text); i++ {
		c := text[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote && quote == '\'' && i+1 < len(text) && text[i+1] == '\'' {
				i++
			} else if c == quote {
				if quote = 0; depth == 0 {
					return i + 1
				}
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '{' || c == '[':
			depth++
		case depth > 0 && (c == '}' || c == ']'):
			if depth--; depth == 0 {
				return i + 1
			}
		case depth == 0 && (c == '\n' || c == '#' && text[i-1] == ' ' || flow && (c == ',' || c == '}' || c == ']')):
			for i > start && strings.IndexByte(" \t\r", text[i-1]) >= 0 {
				i--
			}
			return i
		}
	}
	return len(text)
}
