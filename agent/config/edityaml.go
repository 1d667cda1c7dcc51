package config

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// editYAML sets each key by splicing the file's text at the positions yaml.v3's node tree
// gives, so comments, key order, quoting and the keys not named stay as they were (and
// the binary needs yaml's decoder only, not its emitter). A flow collection that holds a
// changed key is written again on one line; a changed list is written in flow style.
func editYAML(data []byte, keys []string, vals [][]string) ([]byte, error) {
	text := string(data)
	for i, k := range keys {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			return nil, err
		}
		var root *yaml.Node
		if len(doc.Content) > 0 {
			root = doc.Content[0]
		}
		if root != nil && root.Kind != yaml.MappingNode {
			return nil, errors.New("the document is not a mapping of keys")
		}
		lines := strings.SplitAfter(text, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
			lines[n-1] += "\n"
		}
		e := &yamlEdit{lines: lines, kind: settingKind(k)}
		e.set(root, nil, strings.Split(k, "."), vals[i], 0)
		text = strings.Join(e.lines, "")
	}
	return []byte(text), nil
}

type yamlEdit struct {
	lines []string
	kind  string
}

// set puts path = items under mapping m (nil: the document is empty; key is m's key
// node, nil for the root), indent being the column of m's keys in block style.
func (e *yamlEdit) set(m, key *yaml.Node, path []string, items []string, indent int) {
	if m != nil && m.Style&yaml.FlowStyle != 0 {
		nm := setNode(m, path, items, e.kind)
		e.replaceSpan(m, renderFlow(nm))
		return
	}
	var k, v *yaml.Node
	if m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == path[0] {
				k, v = m.Content[i], m.Content[i+1]
			}
		}
		if len(m.Content) > 0 {
			indent = m.Content[0].Column - 1
		}
	}
	switch {
	case k == nil && items == nil:
		return // removing what is not there
	case k == nil: // add the key (and the mappings above it) after m's last line
		at := len(e.lines)
		if m != nil && m.Kind == yaml.MappingNode && len(m.Content) > 0 {
			at = lastLine(m)
		} else if key != nil {
			at = key.Line // `ddns:` with nothing under it
		}
		var add []string
		for d, p := range path[:len(path)-1] {
			add = append(add, strings.Repeat(" ", indent+2*d)+p+":\n")
		}
		leaf := setNode(nil, path[len(path)-1:], items, e.kind)
		add = append(add, strings.Repeat(" ", indent+2*(len(path)-1))+path[len(path)-1]+": "+renderFlow(leaf.Content[1])+"\n")
		e.lines = append(e.lines[:at], append(add, e.lines[at:]...)...)
	case len(path) > 1:
		if v.Kind != yaml.MappingNode {
			v = nil // a null: the keys go under k
		}
		e.set(v, k, path[1:], items, k.Column-1+2)
	case items == nil:
		e.lines = append(e.lines[:k.Line-1], e.lines[lastLine(v):]...)
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "":
		l := e.lines[k.Line-1]
		i := strings.Index(l, ":")
		e.lines[k.Line-1] = l[:i+1] + " " + renderFlow(setNode(nil, path, items, e.kind).Content[1]) + l[i+1:]
	default:
		nv := setNode(m, path, items, e.kind)
		nv = nv.Content[slices.Index(nv.Content, k)+1]
		if v.Kind != yaml.ScalarNode && v.Style&yaml.FlowStyle == 0 { // a block list: flow on the key's line
			l := e.lines[k.Line-1]
			i := strings.Index(l, ":")
			e.lines[k.Line-1] = l[:i+1] + " " + renderFlow(nv) + "\n"
			e.lines = append(e.lines[:k.Line], e.lines[lastLine(v):]...)
			return
		}
		e.replaceSpan(v, renderFlow(nv))
	}
}

// setNode returns a copy of mapping m (nil: empty) with path set to items (removed when nil).
func setNode(m *yaml.Node, path []string, items []string, kind string) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	if m != nil && m.Kind == yaml.MappingNode {
		out.Content = append(out.Content, m.Content...)
	}
	i := -1
	for j := 0; j+1 < len(out.Content); j += 2 {
		if out.Content[j].Value == path[0] {
			i = j
		}
	}
	var v *yaml.Node
	switch {
	case len(path) > 1:
		var sub *yaml.Node
		if i >= 0 {
			sub = out.Content[i+1]
		}
		v = setNode(sub, path[1:], items, kind)
	case items == nil:
		if i >= 0 {
			out.Content = append(out.Content[:i:i], out.Content[i+2:]...)
		}
		return out
	case kind == "list":
		v = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, it := range items {
			v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it})
		}
	default:
		tag := "!!str"
		if kind == "bool" || kind == "number" {
			tag = ""
		}
		v = &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: items[0]}
		if i >= 0 && tag == "!!str" && out.Content[i+1].Kind == yaml.ScalarNode {
			v.Style = out.Content[i+1].Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle) // the user's quoting
		}
	}
	if i < 0 {
		out.Content = append(out.Content[:len(out.Content):len(out.Content)], &yaml.Node{Kind: yaml.ScalarNode, Value: path[0]}, v)
	} else {
		out.Content = append(out.Content[:0:0], out.Content...)
		out.Content[i+1] = v
	}
	return out
}

// plainSafe is a string YAML reads back as the same string without quotes.
var plainSafe = regexp.MustCompile(`^[A-Za-z0-9_/.@+-][A-Za-z0-9_/.@+:-]*$`)

// renderFlow writes n in flow style on one line.
func renderFlow(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		var parts []string
		step := 1
		if n.Kind == yaml.MappingNode {
			step = 2
		}
		for i := 0; i < len(n.Content); i += step {
			s := renderFlow(n.Content[i])
			if step == 2 {
				s += ": " + renderFlow(n.Content[i+1])
			}
			parts = append(parts, s)
		}
		if n.Kind == yaml.MappingNode {
			return "{" + strings.Join(parts, ", ") + "}"
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	v := n.Value
	switch {
	case n.Style&yaml.SingleQuotedStyle != 0:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case n.Style&yaml.DoubleQuotedStyle != 0:
		return strconv.Quote(v)
	case n.Tag != "!!str" || plainSafe.MatchString(v) && !looksTyped(v):
		return v
	}
	return strconv.Quote(v)
}

// looksTyped reports whether a plain v would be read as something other than a string.
func looksTyped(v string) bool {
	switch strings.ToLower(v) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
		return true
	}
	_, err := strconv.ParseFloat(v, 64)
	return err == nil || strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0o")
}

// lastLine is the last line (1-based) of n's subtree.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

// replaceSpan replaces the text of node n (a scalar or a flow collection) with s.
func (e *yamlEdit) replaceSpan(n *yaml.Node, s string) {
	li, start := n.Line-1, runeOffset(e.lines[n.Line-1], n.Column-1)
	text := strings.Join(e.lines[li:], "")
	end := spanEnd(text, start, n)
	rest := strings.SplitAfter(text[:start]+s+text[end:], "\n")
	if rest[len(rest)-1] == "" {
		rest = rest[:len(rest)-1]
	}
	e.lines = append(e.lines[:li], rest...)
}

func runeOffset(s string, col int) int {
	for i := range s {
		if col == 0 {
			return i
		}
		col--
	}
	return len(s)
}

// spanEnd is where the token or flow collection starting at text[start] ends.
func spanEnd(text string, start int, n *yaml.Node) int {
	depth, quote := 0, byte(0)
	for i := start; i < len(text); i++ {
		c := text[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				if quote == '\'' && i+1 < len(text) && text[i+1] == '\'' {
					i++
					continue
				}
				quote = 0
				if depth == 0 {
					return i + 1
				}
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i // the end of a plain scalar inside a flow collection
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case depth == 0 && (c == '\n' || c == ',' || c == '#' && i > start && text[i-1] == ' '):
			return len(strings.TrimRight(text[:i], " \t"))
		}
	}
	return len(text)
}
