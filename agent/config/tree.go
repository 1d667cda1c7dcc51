package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// node is the format-neutral tree both YAML and UCI files are read into before decoding, so
// both formats share one decoder, one set of defaults and one validation pass.
type node struct {
	kind  nodeKind
	line  int
	value string   // scalar
	keys  []string // mapping, in file order
	vals  []*node  // mapping values, parallel to keys
	items []*node  // sequence
}

type nodeKind int

const (
	scalarNode nodeKind = iota
	mappingNode
	sequenceNode
	nullNode
)

func (k nodeKind) String() string {
	return [...]string{"a single value", "a section (key: value pairs)", "a list", "nothing"}[k]
}

// get returns the value for key in a mapping node, or nil.
func (n *node) get(key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// set replaces or appends key in a mapping node.
func (n *node) set(key string, v *node) {
	for i, k := range n.keys {
		if k == key {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, key)
	n.vals = append(n.vals, v)
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode fills v from n, reporting every mismatch (unknown key, wrong type) on c.
func decode(n *node, v reflect.Value, path string, c *checker) {
	if n.line > 0 && path != "" {
		if _, ok := c.lines[path]; !ok {
			c.lines[path] = n.line
		}
	}
	if n.kind == nullNode {
		return // leaves the zero value: absent
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		if s, ok := scalar(n, path, c); ok {
			d, err := parseDuration(s)
			if err != nil {
				c.add(path, "expected a duration like 10s or 5m, got %q", s)
				return
			}
			v.SetInt(int64(d))
		}
	case v.Kind() == reflect.Struct:
		if n.kind != mappingNode {
			c.add(path, "expected %s, got %s", mappingNode, n.kind)
			return
		}
		fields := yamlFields(v.Type())
		for i, k := range n.keys {
			f, ok := fields[k]
			if !ok {
				c.add(join(path, k), "unknown key (known keys: %s)", knownKeys(fields))
				if l := n.vals[i].line; l > 0 {
					c.probs[len(c.probs)-1].Line = l
				}
				continue
			}
			decode(n.vals[i], v.FieldByIndex(f.index), join(path, k), c)
		}
	case v.Kind() == reflect.Slice:
		items := n.items
		switch n.kind {
		case sequenceNode:
		case scalarNode: // one value where a list is expected: a one-item list
			items = []*node{n}
		default:
			c.add(path, "expected %s, got %s", sequenceNode, n.kind)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			decode(it, s.Index(i), fmt.Sprintf("%s[%d]", path, i), c)
		}
		v.Set(s)
	case v.Kind() == reflect.String:
		if s, ok := scalar(n, path, c); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Int:
		if s, ok := scalar(n, path, c); ok {
			i, err := strconv.Atoi(s)
			if err != nil {
				c.add(path, "expected an integer, got %q", s)
				return
			}
			v.SetInt(int64(i))
		}
	case v.Kind() == reflect.Bool:
		if s, ok := scalar(n, path, c); ok {
			b, err := parseBool(s)
			if err != nil {
				c.add(path, "%v", err)
				return
			}
			v.SetBool(b)
		}
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

func scalar(n *node, path string, c *checker) (string, bool) {
	if n.kind != scalarNode {
		c.add(path, "expected %s, got %s", scalarNode, n.kind)
		return "", false
	}
	return n.value, true
}

// parseBool accepts YAML's and UCI's spellings (OpenWrt's get_bool: 1/on/true/yes/enabled).
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "on", "true", "yes", "enabled":
		return true, nil
	case "0", "off", "false", "no", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("expected true or false (or 1/0, yes/no, on/off), got %q", s)
}

// parseDuration accepts Go durations ("90s", "5m") and plain seconds ("90").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// yamlField is one key of a struct: its name, where its field is and its type.
type yamlField struct {
	name  string
	index []int
	typ   reflect.Type
}

// fieldsOf lists a struct's yaml keys in field order. The keys of an inline struct
// (`yaml:",inline"`: a part's Config inside the section that also holds enabled) count as
// the outer struct's own.
func fieldsOf(t reflect.Type) []yamlField {
	var fs []yamlField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			for _, sub := range fieldsOf(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				fs = append(fs, sub)
			}
		case name != "" && name != "-":
			fs = append(fs, yamlField{name: name, index: []int{i}, typ: f.Type})
		}
	}
	return fs
}

// yamlFields maps a struct's yaml keys to their fields.
func yamlFields(t reflect.Type) map[string]yamlField {
	m := make(map[string]yamlField)
	for _, f := range fieldsOf(t) {
		m[f.name] = f
	}
	return m
}

func knownKeys(fields map[string]yamlField) string {
	ks := make([]string, 0, len(fields))
	for k := range fields {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
