package web

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestTrafficRingKeepsTheLastHourAsMinutes(t *testing.T) {
	tr := newTraffic(3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.add(t0, Counters{BytesIn: 1000, BytesOut: 500, Clients: 1})
	tr.add(t0.Add(time.Minute), Counters{BytesIn: 1600, BytesOut: 700, Clients: 2})
	tr.add(t0.Add(2*time.Minute), Counters{BytesIn: 100, BytesOut: 50, Clients: 1}) // relay restarted
	tr.add(t0.Add(3*time.Minute), Counters{BytesIn: 400, BytesOut: 50, Clients: 0})
	got := tr.samples()
	want := []Sample{
		{T: t0.Add(time.Minute), BytesIn: 600, BytesOut: 200, Clients: 2},
		{T: t0.Add(2 * time.Minute), BytesIn: 100, BytesOut: 50, Clients: 1},
		{T: t0.Add(3 * time.Minute), BytesIn: 300, BytesOut: 0, Clients: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("samples %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestLogTailKeepsTheLastLines(t *testing.T) {
	tail := NewLogTail(2)
	var out strings.Builder
	log := slog.New(tail.Handler(slog.NewTextHandler(&out, nil), slog.LevelInfo)).With("component", "x")
	log.Debug("not kept")
	log.Info("one")
	log.Info("two", "k", "v")
	log.Warn("three")
	lines := tail.Lines()
	if len(lines) != 2 || !strings.Contains(lines[0], `msg=two component=x k=v`) || !strings.Contains(lines[1], "msg=three") {
		t.Errorf("tail %q", lines)
	}
	if strings.Count(out.String(), "\n") != 3 {
		t.Errorf("the log itself got %q", out.String())
	}
}
