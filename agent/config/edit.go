package config

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/edgerelay/edgerelay/agent/atomicfile"
)

// Edit changes settings (Settings keys; values as Value gives them, "" removes the key so
// its default applies) in the config file at path and writes it back atomically, keeping
// everything else: in YAML the comments and keys the change does not touch, in UCI every
// line but the touched options'. The result is validated as Load would; when it has
// problems they are returned (Problems) and nothing is written.
func Edit(path string, changes map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	out, err := EditBytes(data, isUCI(path, data), changes)
	if err != nil {
		return err
	}
	if bytes.Equal(out, data) {
		return nil
	}
	return atomicfile.Write(path, out, info.Mode().Perm())
}

// EditBytes is Edit on a file's contents: the new contents, or the problems of the result.
func EditBytes(data []byte, uci bool, changes map[string]string) ([]byte, error) {
	var probs Problems
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vals := make([][]string, len(keys))
	for i, k := range keys {
		s, ok := settingFor(k)
		if !ok {
			probs = append(probs, Problem{Path: k, Msg: "not a setting the page can change"})
			continue
		}
		v, err := normalize(s, changes[k])
		if err != nil {
			probs = append(probs, Problem{Path: k, Msg: err.Error()})
		}
		vals[i] = v
	}
	if len(probs) > 0 {
		return nil, probs
	}
	var out []byte
	var err error
	if uci {
		out = data
		for i, k := range keys {
			out = editUCI(out, k, vals[i], settingKind(k))
		}
	} else if out, err = editYAML(data, keys, vals); err != nil {
		return nil, Problems{{Path: "yaml", Msg: err.Error()}}
	}
	if _, err := Parse(out, uci); err != nil {
		return nil, err
	}
	return out, nil
}

func settingKind(k string) string { s, _ := settingFor(k); return s.Kind }

// normalize checks a value against its setting's kind and returns it as items (one for a
// scalar, none to remove the key).
func normalize(s Setting, v string) ([]string, error) {
	v = strings.TrimSpace(v)
	switch s.Kind {
	case "list":
		var items []string
		for _, l := range strings.Split(v, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				items = append(items, l)
			}
		}
		return items, nil
	case "bool":
		if _, err := strconv.ParseBool(v); err != nil || v == "" {
			return nil, fmt.Errorf("want true or false, got %q", v)
		}
		b, _ := strconv.ParseBool(v)
		return []string{strconv.FormatBool(b)}, nil
	case "number":
		if v == "" {
			return nil, nil
		}
		if _, err := strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("want a whole number, got %q", v)
		}
	case "choice":
		if !slices.Contains(s.Choices, v) {
			return nil, fmt.Errorf("want one of %s, got %q", strings.Join(s.Choices, ", "), v)
		}
	}
	if v == "" {
		return nil, nil
	}
	return []string{v}, nil
}

// editUCI rewrites only the lines of one option: its option/list lines in the first
// section of its type are replaced (or the option added at the section's end, or the
// section added at the file's end). Other lines, comments included, are kept as they are.
func editUCI(data []byte, key string, items []string, kind string) []byte {
	typ, opt := "edgerelay", key
	if sec, rest, ok := strings.Cut(key, "."); ok {
		typ, opt = sec, strings.ReplaceAll(rest, ".", "_")
	}
	var add []string
	for _, v := range items {
		if kind == "bool" {
			v = map[string]string{"true": "1", "false": "0"}[v]
		}
		kw := "option"
		if kind == "list" {
			kw = "list"
		}
		add = append(add, fmt.Sprintf("\t%s %s %s\n", kw, opt, uciQuote(v)))
	}
	lines := strings.SplitAfter(string(data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	cmds, _ := lexUCI(string(data)) // the file parsed before: no error
	start, insert := -1, -1         // line indexes: the section's config line, where to add
	var drop []int
scan:
	for _, c := range cmds {
		kw := c.words[0]
		switch {
		case kw == "config" || kw == "c":
			if start >= 0 {
				break scan
			}
			if len(c.words) > 1 && c.words[1] == typ {
				start, insert = c.line-1, c.line
			}
		case start >= 0 && len(c.words) > 1:
			insert = c.line
			if (kw == "option" || kw == "o" || kw == "list" || kw == "l") && c.words[1] == opt {
				drop = append(drop, c.line-1)
			}
		}
	}
	if start < 0 {
		if len(add) == 0 {
			return data
		}
		if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
			lines[n-1] += "\n"
		}
		return []byte(strings.Join(lines, "") + fmt.Sprintf("\nconfig %s '%s'\n", typ, typ) + strings.Join(add, ""))
	}
	if len(drop) > 0 {
		insert = drop[0]
	}
	var out []string
	for i, l := range lines {
		if i == insert {
			out = append(out, add...)
		}
		if !slices.Contains(drop, i) {
			out = append(out, l)
		}
	}
	if insert >= len(lines) {
		if n := len(out); n > 0 && !strings.HasSuffix(out[n-1], "\n") {
			out[n-1] += "\n"
		}
		out = append(out, add...)
	}
	return []byte(strings.Join(out, ""))
}

func uciQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
