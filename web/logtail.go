package web

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// LogTail keeps the last lines the daemon logged, for the page's log tail.
type LogTail struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// NewLogTail keeps up to n lines.
func NewLogTail(n int) *LogTail { return &LogTail{lines: make([]string, n)} }

// Handler returns a slog handler that sends every record to next and, as one text line
// at level or above, to the tail.
func (t *LogTail) Handler(next slog.Handler, level slog.Leveler) slog.Handler {
	return tee{next, slog.NewTextHandler(t, &slog.HandlerOptions{Level: level})}
}

// Write takes one formatted record (slog's text handler writes each in one call).
func (t *LogTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines[t.next] = strings.TrimRight(string(p), "\n")
	t.next = (t.next + 1) % len(t.lines)
	t.full = t.full || t.next == 0
	return len(p), nil
}

// Lines returns the kept lines, oldest first.
func (t *LogTail) Lines() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.full {
		return append([]string(nil), t.lines[:t.next]...)
	}
	return append(append([]string(nil), t.lines[t.next:]...), t.lines[:t.next]...)
}

// tee sends records to two handlers.
type tee struct{ a, b slog.Handler }

func (h tee) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h tee) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.a.Enabled(ctx, r.Level) {
		err = h.a.Handle(ctx, r.Clone())
	}
	if h.b.Enabled(ctx, r.Level) {
		h.b.Handle(ctx, r)
	}
	return err
}

func (h tee) WithAttrs(as []slog.Attr) slog.Handler { return tee{h.a.WithAttrs(as), h.b.WithAttrs(as)} }
func (h tee) WithGroup(n string) slog.Handler       { return tee{h.a.WithGroup(n), h.b.WithGroup(n)} }
