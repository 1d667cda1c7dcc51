package acme

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	legolog "github.com/go-acme/lego/v4/log"
)

var legoLogOnce sync.Once

// routeLegoLog sends lego's own log lines (a package-level logger in lego) to slog: its
// progress chatter at debug, its warnings at warn. Done once per process.
func routeLegoLog(log *slog.Logger) {
	legoLogOnce.Do(func() { legolog.Logger = legoLogger{log.With("lib", "lego")} })
}

type legoLogger struct{ l *slog.Logger }

func (g legoLogger) out(s string) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "[WARN] "):
		g.l.Warn(strings.TrimPrefix(s, "[WARN] "))
	default:
		g.l.Debug(strings.TrimPrefix(s, "[INFO] "))
	}
}

func (g legoLogger) Fatal(args ...any)                 { g.l.Error(fmt.Sprint(args...)) }
func (g legoLogger) Fatalln(args ...any)               { g.l.Error(fmt.Sprint(args...)) }
func (g legoLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g legoLogger) Print(args ...any)                 { g.out(fmt.Sprint(args...)) }
func (g legoLogger) Println(args ...any)               { g.out(fmt.Sprint(args...)) }
func (g legoLogger) Printf(format string, args ...any) { g.out(fmt.Sprintf(format, args...)) }
