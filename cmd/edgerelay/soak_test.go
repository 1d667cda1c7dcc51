package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent"
	"github.com/edgerelay/edgerelay/agent/testenv"
)

// TestSoak is `make soak`: the built daemon under N clients that connect, talk and leave at
// random for EDGERELAY_SOAK_MINUTES. It fails if the daemon dies, or if goroutines, file
// descriptors or heap keep growing once the load is gone. Not part of `make test`.
func TestSoak(t *testing.T) {
	minutes, _ := strconv.Atoi(os.Getenv("EDGERELAY_SOAK_MINUTES"))
	if minutes <= 0 {
		t.Skip("soak: set EDGERELAY_SOAK_MINUTES (make soak)")
	}
	clients := 200
	dir := t.TempDir()
	port := testenv.FreePort(t, "tcp")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nlog_level: warn\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: \"\"\n  accept_rate: 10000\n  tls: {mode: self-signed}\n", dir, port)), 0o600)
	d := startDaemon(t, nil, "-c", cfg)
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
	region := &tailcfg.DERPRegion{RegionID: 900, Nodes: []*tailcfg.DERPNode{{
		Name: "900a", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", DERPPort: port, InsecureForTests: true}}}
	status := func() *agent.Status {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := agent.QueryStatus(ctx, dir)
		if err != nil {
			t.Fatalf("daemon not answering: %v", err)
		}
		return st
	}
	base := status()
	fds0 := countFDs(d.cmd.Process.Pid)

	var sent, recvd, cycles atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(minutes)*time.Minute)
	defer cancel()
	keys := make([]key.NodePublic, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				priv := key.NewNode()
				keys[i] = priv.Public()
				c := derphttp.NewRegionClient(priv, func(string, ...any) {}, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
				go func() {
					for {
						m, err := c.Recv()
						if err != nil {
							return
						}
						if _, ok := m.(derp.ReceivedPacket); ok {
							recvd.Add(1)
						}
					}
				}()
				life := time.After(time.Duration(1+rand.IntN(20)) * time.Second)
			talk:
				for {
					select {
					case <-ctx.Done():
						break talk
					case <-life:
						break talk
					case <-time.After(time.Duration(rand.IntN(50)) * time.Millisecond):
						if c.Send(keys[rand.IntN(clients)], make([]byte, 100+rand.IntN(1300))) == nil {
							sent.Add(1)
						}
					}
				}
				c.Close()
				cycles.Add(1)
			}
		}()
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			st := status()
			t.Logf("soak: clients %d, goroutines %d, heap %.1f MB, sent %d, received %d, connection cycles %d",
				st.Relay.Clients, st.Memory.Goroutines, float64(st.Memory.HeapBytes)/1e6, sent.Load(), recvd.Load(), cycles.Load())
		}
	}
	wg.Wait()
	// With every client gone the daemon must be back near where it started.
	var end *agent.Status
	deadline := time.Now().Add(time.Minute)
	for {
		end = status()
		if end.Relay.Clients == 0 && end.Memory.Goroutines <= base.Memory.Goroutines+5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	fds1 := countFDs(d.cmd.Process.Pid)
	t.Logf("soak done after %d min: %d connection cycles, %d packets sent, %d received; goroutines %d → %d, fds %d → %d, heap %.1f → %.1f MB",
		minutes, cycles.Load(), sent.Load(), recvd.Load(), base.Memory.Goroutines, end.Memory.Goroutines, fds0, fds1,
		float64(base.Memory.HeapBytes)/1e6, float64(end.Memory.HeapBytes)/1e6)
	if end.Relay.Clients != 0 || end.Memory.Goroutines > base.Memory.Goroutines+5 || fds1 > fds0+5 {
		t.Fatalf("leak: clients %d, goroutines %d (start %d), fds %d (start %d)", end.Relay.Clients, end.Memory.Goroutines, base.Memory.Goroutines, fds1, fds0)
	}
	select {
	case err := <-d.exited:
		t.Fatalf("daemon died: %v", err)
	default:
	}
}

func countFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}
