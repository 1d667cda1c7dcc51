package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// TestLoad is `make bench`'s load tool: it drives our relay and the reference derper (built
// from the same tailscale.com version, never shipped) with the same Tailscale clients over
// TLS on loopback, and prints throughput, latency, memory and CPU side by side. It asserts
// nothing about speed; it runs only when EDGERELAY_BENCH=1.
func TestLoad(t *testing.T) {
	if os.Getenv("EDGERELAY_BENCH") != "1" {
		t.Skip("load figures: run with EDGERELAY_BENCH=1 (make bench)")
	}
	dur := 5 * time.Second
	if s := os.Getenv("EDGERELAY_BENCH_SECONDS"); s != "" {
		n, _ := strconv.Atoi(s)
		dur = time.Duration(n) * time.Second
	}
	idleClients := 1000
	derperBin := filepath.Join(t.TempDir(), "derper")
	if out, err := exec.Command("go", "build", "-o", derperBin, "tailscale.com/cmd/derper").CombinedOutput(); err != nil {
		t.Fatalf("building derper: %v\n%s", err, out)
	}
	targets := []struct {
		name  string
		start func(t *testing.T, port int) *exec.Cmd
	}{
		{"edgerelay", func(t *testing.T, port int) *exec.Cmd {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nlog_level: warn\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: \"\"\n  tls: {mode: self-signed}\n  max_clients: 5000\n  accept_rate: 10000\n  accept_rate_per_source: 10000\n  max_pending: 1000\n  max_pending_per_source: 1000\n", dir, port)), 0o600)
			return exec.Command(binPath, "run", "-c", cfg)
		}},
		{"derper", func(t *testing.T, port int) *exec.Cmd {
			dir := t.TempDir()
			return exec.Command(derperBin, "-a", fmt.Sprintf("127.0.0.1:%d", port), "-certmode", "manual", "-certdir", dir,
				"-hostname", "127.0.0.1", "-stun=false", "-http-port", "-1", "-c", filepath.Join(dir, "derper.key"))
		}},
	}
	results := map[string]map[string]float64{}
	var order []string
	for _, tg := range targets {
		port := testenv.FreePort(t, "tcp")
		cmd := tg.start(t, port)
		cmd.Stderr = nil
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))
		time.Sleep(500 * time.Millisecond)
		region := &tailcfg.DERPRegion{RegionID: 900, RegionCode: "bench", Nodes: []*tailcfg.DERPNode{{
			Name: "900a", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", DERPPort: port, InsecureForTests: true,
		}}}
		r := map[string]float64{}
		r["idle RSS MB"] = rssMB(cmd.Process.Pid, "VmRSS")
		for _, pairs := range []int{1, 4, 16} {
			pps := throughput(t, region, pairs, dur)
			r[fmt.Sprintf("pkt/s %2d pairs", pairs)] = pps
			r[fmt.Sprintf("Mbit/s %2d pairs", pairs)] = pps * 1200 * 8 / 1e6
		}
		cpu0 := cpuSeconds(cmd.Process.Pid)
		bytes := throughputBytes(t, region, 4, dur)
		r["CPU s per GB"] = (cpuSeconds(cmd.Process.Pid) - cpu0) / (bytes / 1e9)
		p50, p99 := latency(t, region, 2000)
		r["RTT p50 µs"], r["RTT p99 µs"] = p50, p99
		closeAll := connectIdle(t, region, idleClients)
		r[fmt.Sprintf("RSS %d clients MB", idleClients)] = rssMB(cmd.Process.Pid, "VmRSS")
		r["peak RSS MB"] = rssMB(cmd.Process.Pid, "VmHWM")
		closeAll()
		cmd.Process.Kill()
		cmd.Wait()
		results[tg.name] = r
		if order == nil {
			for k := range r {
				order = append(order, k)
			}
			slices.Sort(order)
		}
	}
	fmt.Printf("\n%-24s %14s %14s %8s\n", "1200-byte packets, TLS", "edgerelay", "derper", "ratio")
	for _, k := range order {
		a, b := results["edgerelay"][k], results["derper"][k]
		fmt.Printf("%-24s %14.1f %14.1f %8.2f\n", k, a, b, a/b)
	}
}

func connectRegion(t *testing.T, region *tailcfg.DERPRegion) (*derphttp.Client, key.NodePublic) {
	t.Helper()
	priv := key.NewNode()
	c := derphttp.NewRegionClient(priv, func(string, ...any) {}, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait for ServerInfo so the server has registered us.
	for {
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(derp.ServerInfoMessage); ok {
			return c, priv.Public()
		}
	}
}

// throughput relays 1200-byte packets over `pairs` sender→receiver pairs for d and returns
// packets received per second.
func throughput(t *testing.T, region *tailcfg.DERPRegion, pairs int, d time.Duration) float64 {
	return throughputBytes(t, region, pairs, d) / 1200 / d.Seconds()
}

func throughputBytes(t *testing.T, region *tailcfg.DERPRegion, pairs int, d time.Duration) float64 {
	var received atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	pkt := make([]byte, 1200)
	var clients []*derphttp.Client
	for range pairs {
		snd, _ := connectRegion(t, region)
		rcv, rk := connectRegion(t, region)
		clients = append(clients, snd, rcv)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if snd.Send(rk, pkt) != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				m, err := rcv.Recv()
				if err != nil {
					return
				}
				if _, ok := m.(derp.ReceivedPacket); ok {
					received.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // warm up
	start := received.Load()
	time.Sleep(d)
	got := received.Load() - start
	close(stop)
	for _, c := range clients {
		c.Close()
	}
	wg.Wait()
	return float64(got) * 1200
}

// latency measures round trips A→B→A of 1200-byte packets, one at a time.
func latency(t *testing.T, region *tailcfg.DERPRegion, n int) (p50, p99 float64) {
	a, ak := connectRegion(t, region)
	b, bk := connectRegion(t, region)
	defer a.Close()
	defer b.Close()
	go func() {
		for {
			m, err := b.Recv()
			if err != nil {
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok {
				b.Send(ak, p.Data)
			}
		}
	}()
	pkt := make([]byte, 1200)
	rtts := make([]float64, 0, n)
	for range n {
		t0 := time.Now()
		a.Send(bk, pkt)
		for {
			m, err := a.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.(derp.ReceivedPacket); ok {
				break
			}
		}
		rtts = append(rtts, float64(time.Since(t0).Microseconds()))
	}
	slices.Sort(rtts)
	return rtts[n/2], rtts[n*99/100]
}

// connectIdle connects n clients and leaves them idle; it returns a func closing them.
func connectIdle(t *testing.T, region *tailcfg.DERPRegion, n int) func() {
	cs := make([]*derphttp.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cs[i], _ = connectRegion(t, region)
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	return func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}
}

func rssMB(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.Atoi(strings.Fields(rest)[0])
			return float64(kb) / 1024
		}
	}
	return 0
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return float64(ut+st) / 100 // USER_HZ
}
