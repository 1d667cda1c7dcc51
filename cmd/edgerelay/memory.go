package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// privateDir creates the state directory 0700, or makes an existing one 0700: it holds the
// server key, certificates and the ACME account.
func privateDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state_dir: %w", err)
		}
		log.Warn("state_dir was open to other users; made it 0700", "state_dir", dir, "was", fmt.Sprintf("%04o", perm))
	}
	return nil
}

// After a burst (an attack, a thousand clients leaving) the Go runtime keeps the freed heap,
// and with nothing allocating, even the garbage waits for the two-minute forced collection.
// On a router that memory belongs to the other services. So every memoryCheckEvery, if no
// collection ran since the last look (the daemon is quiet) and more than minFree of the heap
// is free but not handed back, the daemon collects and hands it back at once. After a burst
// that takes two rounds: the stacks a collection shrinks are freed by the next one (about
// 3 MB on 1,000 clients). Under load collections run on their own and this does nothing;
// an idle relay's heap is a few megabytes, so a collection costs a few milliseconds.
const (
	memoryCheckEvery = 10 * time.Second
	minFree          = 1 << 20
)

func returnFreedMemory(ctx context.Context, every time.Duration) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/free:bytes"}, // free, not yet returned
	}
	read := func() (cycles, free uint64) {
		metrics.Read(samples)
		var v [2]uint64
		for i, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = s.Value.Uint64()
			}
		}
		return v[0], v[1]
	}
	lastCycles, _ := read()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cycles, free := read()
		if cycles == lastCycles && free > minFree {
			debug.FreeOSMemory()
			cycles, _ = read()
		}
		lastCycles = cycles
	}
}
