package web

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestTrafficKeepsTheLastHourAsMinutes(t *testing.T) {
	tr := &traffic{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.add(t0, Counters{BytesIn: 1000, BytesOut: 500, Clients: 1})
	tr.add(t0.Add(time.Minute), Counters{BytesIn: 1600, BytesOut: 700, Clients: 2})
	tr.add(t0.Add(2*time.Minute), Counters{BytesIn: 100, BytesOut: 50, Clients: 1}) // relay restarted
	tr.add(t0.Add(3*time.Minute), Counters{BytesIn: 400, BytesOut: 50, Clients: 0})
	for i := 4; i <= 61; i++ {
		tr.add(t0.Add(time.Duration(i)*time.Minute), Counters{BytesIn: 400 + int64(i), BytesOut: 50, Clients: 3})
	}
	got := tr.get()
	if len(got) != 60 {
		t.Fatalf("%d samples, want the last 60", len(got))
	}
	m := t0.Unix()
	want := [][4]int64{
		{m + 2*60, 100, 50, 1},
		{m + 3*60, 300, 0, 0},
		{m + 4*60, 4, 0, 3},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: %v, want %v", i, got[i], want[i])
		}
	}
	if last := got[59]; last != [4]int64{m + 61*60, 1, 0, 3} {
		t.Errorf("last sample %v", last)
	}
}

func TestLogTailKeepsTheLastLines(t *testing.T) {
	var out strings.Builder
	tail := NewLogTail(&out, 2)
	log := slog.New(slog.NewTextHandler(tail, nil)).With("component", "x")
	log.Debug("not logged")
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
