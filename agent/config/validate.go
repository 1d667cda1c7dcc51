package config

import (
	"fmt"
	"strings"

	"github.com/edgerelay/edgerelay/agent/field"
)

// Problem is one thing wrong with a config: the key path, the source line when known, and
// what was expected.
type Problem struct {
	Path string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Path, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Path, p.Msg)
}

// Problems is every problem found in one config; it is the error Load and Validate return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// checker collects problems and knows the source line of each key path it was decoded from.
type checker struct {
	probs Problems
	lines map[string]int
}

// add records a problem at path, with the line of the nearest key that has one.
func (c *checker) add(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := c.lines[p]; ok {
			line = l
			break
		}
	}
	c.probs = append(c.probs, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// merge records the problems a part's Validate found in the section at path.
func (c *checker) merge(path string, err error) {
	var ps field.Problems
	ps.Merge(path, err)
	for _, p := range ps {
		c.add(p.Key, "%s", p.Msg)
	}
}

// parentPath strips the last element of a key path: "a.b[2].c" → "a.b[2]" → "a.b" → "a".
func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}
