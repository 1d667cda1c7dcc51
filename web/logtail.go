package web

import (
	"io"
	"strings"
	"sync"
)

// LogTail is the daemon's log writer: it passes every line on and keeps the last ones for
// the page's log tail.
type LogTail struct {
	out   io.Writer
	n     int
	mu    sync.Mutex
	lines []string
}

// NewLogTail writes to out and keeps the last n lines.
func NewLogTail(out io.Writer, n int) *LogTail { return &LogTail{out: out, n: n} }

// Write takes one formatted record (slog's handlers write each in one call).
func (t *LogTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	if len(t.lines) >= t.n {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, strings.TrimSuffix(string(p), "\n"))
	t.mu.Unlock()
	return t.out.Write(p)
}

// Lines returns the kept lines, oldest first.
func (t *LogTail) Lines() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	lines := append([]string(nil), t.lines...)
	t.mu.Unlock()
	return lines
}
