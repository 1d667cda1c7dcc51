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
	if err != nil || bytes.Equal(out, data) {
		return err
	}
	return atomicfile.Write(path, out, info.Mode().Perm())
}

// EditBytes is Edit on a file's contents: the new contents, or the problems of the result.
func EditBytes(data []byte, uci bool, changes map[string]string) ([]byte, error) {
	var probs Problems
	text, known := string(data), 0
	for _, s := range Settings { // in the page's order
		v, ok := changes[s.Key]
		if !ok {
			continue
		}
		known++
		items, msg := normalize(s, v)
		switch {
		case msg != "":
			probs = append(probs, Problem{Path: s.Key, Msg: msg})
		case len(probs) > 0: // no use editing further
		case uci:
			text = editUCI(text, s, items)
		default:
			var err error
			if text, err = editYAML(text, s, items); err != nil {
				probs = append(probs, Problem{Path: s.Key, Msg: err.Error()})
			}
		}
	}
	for k := range changes {
		i := 0
		for known < len(changes) && i < len(Settings) && Settings[i].Key != k {
			i++
		}
		if i == len(Settings) {
			probs = append(probs, Problem{Path: k, Msg: "not a setting the page can change"})
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	if _, err := Parse([]byte(text), uci); err != nil {
		return nil, err
	}
	return []byte(text), nil
}

// normalize checks a value against its setting's kind and returns it as items (one for a
// scalar, none to remove the key), or what was wanted.
func normalize(s Setting, v string) ([]string, string) {
	v = strings.TrimSpace(v)
	var items []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			items = append(items, l)
		}
	}
	switch _, err := strconv.Atoi(v); {
	case s.Kind == "list":
		return items, ""
	case s.Kind == "bool":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, "want true or false"
		}
		return []string{strconv.FormatBool(b)}, ""
	case s.Kind == "number" && v != "" && err != nil:
		return nil, "want a whole number"
	case s.Kind == "choice" && !slices.Contains(s.Choices, v):
		return nil, "want one of " + strings.Join(s.Choices, ", ")
	case v == "" && !s.EmptyOff:
		return nil, ""
	}
	return []string{v}, ""
}

// editUCI rewrites only the lines of one option: its option/list lines in the first
// section of its type are replaced (or the option added after the section's last command,
// or the section added at the file's end). Other lines, comments included, are kept.
func editUCI(text string, s Setting, items []string) string {
	typ, opt := "edgerelay", s.Key
	if sec, rest, ok := strings.Cut(s.Key, "."); ok {
		typ, opt = sec, strings.ReplaceAll(rest, ".", "_")
	}
	kw := "\toption "
	if s.Kind == "list" {
		kw = "\tlist "
	}
	add := ""
	for _, v := range items {
		if v == "" { // uci deletes an empty option: write none, or the setting's word for off
			if !s.EmptyOff {
				continue
			}
			v = "off"
		}
		if v == "true" && s.Kind == "bool" {
			v = "1"
		} else if v == "false" && s.Kind == "bool" {
			v = "0"
		}
		add += kw + opt + " '" + strings.ReplaceAll(v, "'", `'\''`) + "'\n"
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	lines := strings.SplitAfter(text, "\n")
	cmds, _ := lexUCI(text)             // the file parsed before: no error
	in, at, dropped := false, -1, false // at: the line index where the option goes
scan:
	for _, c := range cmds {
		switch w := c.words; {
		case w[0] == "config" || w[0] == "c":
			if in {
				break scan
			}
			if in = len(w) > 1 && w[1] == typ; in {
				at = c.line
			}
		case !in || len(w) < 2:
		case w[1] == opt && (w[0] == "option" || w[0] == "o" || w[0] == "list" || w[0] == "l"):
			if !dropped {
				at, dropped = c.line-1, true
			}
			lines[c.line-1] = ""
		case !dropped:
			at = c.line
		}
	}
	if at < 0 {
		if add == "" {
			return text
		}
		return text + "\nconfig " + typ + " '" + typ + "'\n" + add
	}
	return strings.Join(lines[:at], "") + add + strings.Join(lines[at:], "")
}
