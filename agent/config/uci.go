package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// OpenWrt UCI files map onto the same tree as YAML:
//
//	config edgerelay 'main'      → top-level keys (state_dir, log_level, metrics_listen)
//	config relay|ddns|acme|subnet|peer_relay|notify → that section
//	config record                 → one item of ddns.records (repeatable)
//	config webhook                → one item of notify.webhooks (repeatable)
//
// Nested keys are joined with underscores: relay.region.id is `option region_id`,
// relay.verify_clients.allow is `list verify_clients_allow`, ddns.provider.type is
// `option provider_type`. A single `option` where a list is expected is a one-item list.

// uciSection is one `config` block as written in the file.
type uciSection struct {
	typ, name string
	line      int
	opts      []uciOption
}

type uciOption struct {
	name   string
	values []string
	list   bool
	line   int
}

// uciCommand is one parsed command: its words and the line it starts on.
type uciCommand struct {
	words []string
	line  int
}

// parseUCI reads a UCI file with libuci's grammar and rules: config/option/list/package (and
// their one-letter forms), single quotes (literal), double quotes (backslash escapes),
// concatenated word pieces, `#` comments, `;` separated commands; extra arguments are an
// error ("too many arguments", as uci in its default strict mode says), and a section name
// seen before continues that section, as uci merges it.
func parseUCI(data []byte) ([]uciSection, error) {
	if bytes.HasPrefix(data, utf8BOM) {
		return nil, errors.New("line 1: the file starts with a UTF-8 byte order mark, which uci reads as an invalid command: save it without one")
	}
	cmds, err := lexUCI(string(data))
	if err != nil {
		return nil, err
	}
	var secs []uciSection
	cur := -1 // index of the section options go to
	for _, cmd := range cmds {
		kw, args := cmd.words[0], cmd.words[1:]
		if err := checkUCIArity(cmd); err != nil {
			return nil, err
		}
		switch kw {
		case "package", "p":
		case "config", "c":
			if len(args) < 1 {
				return nil, fmt.Errorf("line %d: config needs a section type", cmd.line)
			}
			s := uciSection{typ: args[0], line: cmd.line}
			if len(args) > 1 {
				s.name = args[1]
				if !validUCIName(s.name) {
					return nil, fmt.Errorf("line %d: invalid section name %q (letters, digits, _)", cmd.line, s.name)
				}
			}
			cur = len(secs)
			if i := namedSection(secs, s.name); i >= 0 {
				if secs[i].typ != s.typ {
					return nil, fmt.Errorf("line %d: section %q of type %s overwrites the %s section of that name at line %d",
						cmd.line, s.name, s.typ, secs[i].typ, secs[i].line)
				}
				cur = i // uci continues the earlier section
				continue
			}
			secs = append(secs, s)
		case "option", "o", "list", "l":
			if cur < 0 {
				return nil, fmt.Errorf("line %d: %s command found before the first section", cmd.line, kw)
			}
			if len(args) < 1 || !validUCIName(args[0]) {
				return nil, fmt.Errorf("line %d: %s needs a name of letters, digits and _", cmd.line, kw)
			}
			val := ""
			if len(args) > 1 {
				val = args[1]
			}
			addUCIOption(&secs[cur], args[0], val, kw == "list" || kw == "l", cmd.line)
		default:
			return nil, fmt.Errorf("line %d: unknown command %q (config, option, list)", cmd.line, kw)
		}
	}
	return secs, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// checkUCIArity refuses extra words as uci does: `option region_name My Home` is an error
// there, not the value "My".
func checkUCIArity(cmd uciCommand) error {
	kw, args := cmd.words[0], cmd.words[1:]
	maxArgs := 2
	if kw == "package" || kw == "p" {
		maxArgs = 1
	}
	if len(args) <= maxArgs {
		return nil
	}
	extra := strings.Join(args[maxArgs:], " ")
	if kw == "config" || kw == "c" || maxArgs == 1 {
		return fmt.Errorf("line %d: too many arguments to %s (%q)", cmd.line, kw, extra)
	}
	return fmt.Errorf("line %d: too many arguments to %s %s (%q): quote a value with spaces, as in %s %s '%s'",
		cmd.line, kw, args[0], extra, kw, args[0], strings.Join(args[1:], " "))
}

// namedSection returns the index of the section called name, or -1 (always for anonymous ones).
func namedSection(secs []uciSection, name string) int {
	if name == "" {
		return -1
	}
	for i, s := range secs {
		if s.name == name {
			return i
		}
	}
	return -1
}

// addUCIOption applies uci's rules: option replaces, list appends (turning an earlier option
// into the list's first item), an empty option value deletes the option.
func addUCIOption(s *uciSection, name, val string, list bool, line int) {
	for i := range s.opts {
		o := &s.opts[i]
		if o.name != name {
			continue
		}
		switch {
		case list:
			o.values, o.list, o.line = append(o.values, val), true, line
		case val == "":
			s.opts = append(s.opts[:i], s.opts[i+1:]...)
		default:
			o.values, o.list, o.line = []string{val}, false, line
		}
		return
	}
	if !list && val == "" {
		return
	}
	s.opts = append(s.opts, uciOption{name: name, values: []string{val}, list: list, line: line})
}

func validUCIName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// lexUCI splits the text into commands of words.
func lexUCI(src string) ([]uciCommand, error) {
	var (
		cmds    []uciCommand
		words   []string
		word    strings.Builder
		inWord  bool
		line    = 1
		cmdLine = 1
	)
	endWord := func() {
		if inWord {
			if len(words) == 0 {
				cmdLine = line
			}
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, uciCommand{words: words, line: cmdLine})
		}
		words = nil
	}
	for i := 0; i < len(src); i++ {
		ch := src[i]
		switch {
		case ch == '\n':
			endCmd()
			line++
		case ch == ' ' || ch == '\t' || ch == '\r':
			endWord()
		case ch == ';':
			endCmd()
		case ch == '#':
			endCmd()
			for i < len(src) && src[i] != '\n' {
				i++
			}
			i-- // the newline ends the command on the next turn
		case ch == '\'':
			start := line
			if !inWord && len(words) == 0 {
				cmdLine = line
			}
			inWord = true
			j := strings.IndexByte(src[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated single quote", start)
			}
			lit := src[i+1 : i+1+j]
			line += strings.Count(lit, "\n")
			word.WriteString(lit)
			i += j + 1
		case ch == '"':
			start := line
			if !inWord && len(words) == 0 {
				cmdLine = line
			}
			inWord = true
			closed := false
			for i++; i < len(src); i++ {
				c := src[i]
				if c == '"' {
					closed = true
					break
				}
				if c == '\n' {
					line++
				}
				if c == '\\' && i+1 < len(src) {
					i++
					if src[i] == '\n' { // line continuation
						line++
						continue
					}
					c = src[i]
				}
				word.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("line %d: unterminated double quote", start)
			}
		case ch == '\\' && i+1 < len(src):
			i++
			if src[i] == '\n' {
				line++
				continue
			}
			if !inWord && len(words) == 0 {
				cmdLine = line
			}
			inWord = true
			word.WriteByte(src[i])
		default:
			if ch < 0x20 && ch != '\t' {
				return nil, fmt.Errorf("line %d: control character 0x%02x", line, ch)
			}
			if !inWord && len(words) == 0 {
				cmdLine = line
			}
			inWord = true
			word.WriteByte(ch)
		}
	}
	endCmd()
	return cmds, nil
}

// uciSectionKeys maps UCI section types onto the top-level key they fill.
var uciSectionKeys = map[string]string{
	"edgerelay":  "",
	"relay":      "relay",
	"ddns":       "ddns",
	"acme":       "acme",
	"subnet":     "subnet",
	"peer_relay": "peer_relay",
	"notify":     "notify",
	"web":        "web",
	"record":     "ddns.records",
	"webhook":    "notify.webhooks",
}

// uciTree turns UCI sections into the neutral tree, reporting unknown section types and
// options on c.
func uciTree(secs []uciSection, c *checker) *node {
	root := &node{kind: mappingNode}
	seen := map[string]int{}
	for _, s := range secs {
		key, ok := uciSectionKeys[s.typ]
		if !ok {
			c.probs = append(c.probs, Problem{Path: "config " + s.typ, Line: s.line,
				Msg: "unknown section type (known: " + strings.Join(sortedKeys(uciSectionKeys), ", ") + ")"})
			continue
		}
		var target *node
		var t reflect.Type
		section, list, isItem := strings.Cut(key, ".")
		if !isItem {
			if prev, dup := seen[s.typ]; dup {
				c.probs = append(c.probs, Problem{Path: "config " + s.typ, Line: s.line,
					Msg: fmt.Sprintf("section appears twice (first at line %d); give both the same name to merge them, as uci does", prev)})
				continue
			}
			seen[s.typ] = s.line
		}
		switch {
		case key == "":
			target, t = root, reflect.TypeOf(Config{})
		case isItem: // one item of a list of sections, such as ddns.records
			sec := ensureMapping(root, section, s.line)
			items := sec.get(list)
			if items == nil {
				items = &node{kind: sequenceNode, line: s.line}
				sec.set(list, items)
			}
			target = &node{kind: mappingNode, line: s.line}
			items.items = append(items.items, target)
			secType := derefType(yamlFields(reflect.TypeOf(Config{}))[section].typ)
			t = derefType(yamlFields(secType)[list].typ.Elem())
		default:
			target = ensureMapping(root, key, s.line)
			top := reflect.TypeOf(Config{})
			t = derefType(yamlFields(top)[key].typ)
		}
		for _, o := range s.opts {
			path, ok := uciResolve(t, o.name, key == "")
			if !ok {
				c.probs = append(c.probs, Problem{Path: s.typ + "." + o.name, Line: o.line,
					Msg: "unknown option (known: " + strings.Join(uciOptionNames(t, key == ""), ", ") + ")"})
				continue
			}
			val := &node{kind: scalarNode, line: o.line, value: o.values[0]}
			if o.list {
				val = &node{kind: sequenceNode, line: o.line}
				for _, v := range o.values {
					val.items = append(val.items, &node{kind: scalarNode, line: o.line, value: v})
				}
			}
			parent := target
			for _, p := range path[:len(path)-1] {
				parent = ensureMapping(parent, p, o.line)
			}
			parent.set(path[len(path)-1], val)
		}
	}
	return root
}

func ensureMapping(n *node, key string, line int) *node {
	if m := n.get(key); m != nil && m.kind == mappingNode {
		return m
	}
	m := &node{kind: mappingNode, line: line}
	n.set(key, m)
	return m
}

// uciResolve finds the yaml key path an underscore-joined UCI option name stands for.
// At the top level only plain values resolve: sections have their own `config` blocks.
func uciResolve(t reflect.Type, name string, top bool) ([]string, bool) {
	fields := yamlFields(t)
	if f, ok := fields[name]; ok {
		return []string{name}, !top || !isSection(f.typ)
	}
	if top {
		return nil, false
	}
	for k, f := range fields {
		ft := derefType(f.typ)
		if !isSection(ft) || !strings.HasPrefix(name, k+"_") {
			continue
		}
		if rest, ok := uciResolve(ft, name[len(k)+1:], false); ok {
			return append([]string{k}, rest...), true
		}
	}
	return nil, false
}

// uciOptionNames lists the option names a section type accepts, for error messages.
func uciOptionNames(t reflect.Type, top bool) []string {
	var names []string
	for k, f := range yamlFields(t) {
		ft := derefType(f.typ)
		switch {
		case top && isSection(ft):
		case isSection(ft):
			for _, sub := range uciOptionNames(ft, false) {
				names = append(names, k+"_"+sub)
			}
		case ft.Kind() == reflect.Slice && derefType(ft.Elem()).Kind() == reflect.Struct:
		default:
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// isSection reports whether a field holds nested keys rather than a value.
func isSection(t reflect.Type) bool {
	t = derefType(t)
	return t.Kind() == reflect.Struct
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
