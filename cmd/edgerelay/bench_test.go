package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// The bench pins the server under test to one core and its load (a separate process) to the
// other, so what it reports as server CPU is the server's own.
const (
	serverCPU = "0"
	loadCPU   = "1"
)

// TestLoad is `make bench`'s load tool: it drives our relay, the reference derper (built from
// the same tailscale.com version, never shipped) and a floor (a bare TLS forwarder, no DERP)
// with the same load over TLS on loopback, and prints delivered packets, loss and server CPU
// per packet at paced rates and past saturation, round-trip times and memory side by side.
// It asserts nothing about speed; it runs only when EDGERELAY_BENCH=1.
func TestLoad(t *testing.T) {
	if os.Getenv("EDGERELAY_BENCH") != "1" {
		t.Skip("load figures: run with EDGERELAY_BENCH=1 (make bench)")
	}
	derperBin := filepath.Join(t.TempDir(), "derper")
	if out, err := exec.Command("go", "build", "-o", derperBin, "tailscale.com/cmd/derper").CombinedOutput(); err != nil {
		t.Fatalf("building derper: %v\n%s", err, out)
	}
	printBenchContext()
	servers := []benchServer{
		{"edgerelay", edgerelayCmd(binPath)},
		{"derper", derperCmd(derperBin)},
		{"floor", func(_ *testing.T, port int) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchFloor$", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("EDGERELAY_BENCH_FLOOR=127.0.0.1:%d", port), "EDGERELAY_E2E_BIN="+binPath)
			return cmd
		}},
	}
	// Rounds alternate the servers, so a burst of other work on the machine does not land
	// on one server only; each figure is the median over the rounds.
	// EDGERELAY_BENCH_PART=sweep or memory runs only that part.
	part := os.Getenv("EDGERELAY_BENCH_PART")
	var rows []benchRow
	for round := range benchRounds() {
		for _, s := range servers {
			if part != "memory" {
				rows = append(rows, s.sweep(t, benchSeconds(6))...)
			}
			if round == 0 && s.name != "floor" && part != "sweep" {
				rows = append(rows, s.latencyAndMemory(t)...)
			}
		}
	}
	printRows("amd64 (this machine), server on one core, load on the other", rows, []string{"edgerelay", "derper", "floor"})
}

// benchRounds is how often each server runs the sweep (EDGERELAY_BENCH_ROUNDS, default 2).
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("EDGERELAY_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// benchSeconds is the measured window of each step (EDGERELAY_BENCH_SECONDS overrides def).
func benchSeconds(def float64) float64 {
	if n, err := strconv.ParseFloat(os.Getenv("EDGERELAY_BENCH_SECONDS"), 64); err == nil && n > 0 {
		return n
	}
	return def
}

// step is one load: pairs of senders at a total rate (0: unpaced, past saturation), evenly
// spaced or in bursts each millisecond.
type step struct {
	pairs  int
	rate   float64
	bursty bool
	lock   bool // lockstep: one packet in flight per pair (each packet its own wake-up)
}

func (s step) String() string {
	switch {
	case s.lock:
		return fmt.Sprintf("%2d pairs lockstep", s.pairs)
	case s.rate == 0:
		return fmt.Sprintf("%2d pairs unpaced", s.pairs)
	case s.bursty:
		return fmt.Sprintf("%2d pairs %5.0f/s bursts", s.pairs, s.rate)
	}
	return fmt.Sprintf("%2d pairs %5.0f/s even", s.pairs, s.rate)
}

func (s step) spec(addr string, raw bool, secs float64) loadSpec {
	return loadSpec{Addr: addr, Raw: raw, Pairs: s.pairs, Rate: s.rate, Bursty: s.bursty, Lock: s.lock, Seconds: secs, Size: 1200}
}

// pacedSteps go from one packet at a time (lockstep) and light load to past saturation.
// Lockstep and even pacing make every packet a wake-up; bursts (what is due each
// millisecond, back to back) let servers batch.
var pacedSteps = []step{
	{pairs: 1, lock: true},
	{pairs: 1, rate: 5000}, {pairs: 4, rate: 2000}, {pairs: 4, rate: 5000}, {pairs: 4, rate: 10000}, {pairs: 4, rate: 20000},
	{pairs: 1, rate: 5000, bursty: true}, {pairs: 4, rate: 5000, bursty: true}, {pairs: 4, rate: 20000, bursty: true},
	{pairs: 1}, {pairs: 4}, {pairs: 16},
}

// benchServer starts one server under test on a port.
type benchServer struct {
	name  string
	start func(t *testing.T, port int) *exec.Cmd
}

// benchRow is one figure for one server.
type benchRow struct {
	server, what string
	value        float64
}

func edgerelayCmd(bin string, wrap ...string) func(*testing.T, int) *exec.Cmd {
	return func(t *testing.T, port int) *exec.Cmd {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nlog_level: warn\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: \"\"\n  tls: {mode: self-signed}\n  max_clients: 5000\n  accept_rate: 10000\n  accept_rate_per_source: 10000\n  max_pending: 1000\n  max_pending_per_source: 1000\n", dir, port)), 0o600)
		args := append(wrap, bin, "run", "-c", cfg)
		return exec.Command(args[0], args[1:]...)
	}
}

func derperCmd(bin string, wrap ...string) func(*testing.T, int) *exec.Cmd {
	return func(t *testing.T, port int) *exec.Cmd {
		dir := t.TempDir()
		args := append(wrap, bin, "-a", fmt.Sprintf("127.0.0.1:%d", port), "-certmode", "manual", "-certdir", dir,
			"-hostname", "127.0.0.1", "-stun=false", "-http-port", "-1", "-c", filepath.Join(dir, "derper.key"))
		return exec.Command(args[0], args[1:]...)
	}
}

// launch starts the server pinned to serverCPU and waits until it listens.
func (s benchServer) launch(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	port := testenv.FreePort(t, "tcp")
	cmd := s.start(t, port)
	cmd.Args = append([]string{"taskset", "-c", serverCPU}, cmd.Args...)
	cmd.Path, _ = exec.LookPath("taskset")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitTCP(t, addr)
	time.Sleep(500 * time.Millisecond)
	return cmd, addr
}

// sweep measures delivered packets, loss and server CPU per packet at each paced step.
func (s benchServer) sweep(t *testing.T, secs float64) []benchRow {
	cmd, addr := s.launch(t)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var rows []benchRow
	for _, st := range pacedSteps {
		r, cpu := measure(t, cmd.Process.Pid, st.spec(addr, s.name == "floor", secs), loadCPU)
		rows = append(rows,
			benchRow{s.name, st.String() + " delivered/s", float64(r.Received) / r.Seconds},
			benchRow{s.name, st.String() + " CPU µs/pkt", r.microsPer(cpu.total())},
			// The kernel's share (TCP over loopback, both ends) is alike for every server.
			benchRow{s.name, st.String() + " user µs/pkt", r.microsPer(cpu.user)})
		if st.rate > 0 { // unpaced senders count what is still in socket buffers as lost
			rows = append(rows, benchRow{s.name, st.String() + " loss %", 100 * (1 - float64(r.Received)/float64(max(r.Sent, 1)))})
		}
	}
	return rows
}

// latencyAndMemory measures round trips one at a time, and RSS idle and with 1,000 idle
// clients: two seconds after they connected (close to the peak the handshakes leave),
// after 30 seconds in which the runtime returns what the handshakes freed, and after
// 90 seconds, past the first keepalive to every client (sent 60 s after it connected).
func (s benchServer) latencyAndMemory(t *testing.T) []benchRow {
	cmd, addr := s.launch(t)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	rows := []benchRow{{s.name, "idle RSS MiB", rssMB(pid, "VmRSS")}}
	r, _ := measure(t, pid, loadSpec{Addr: addr, RTT: 2000, Size: 1200}, loadCPU)
	rows = append(rows, benchRow{s.name, "RTT p50 µs", r.P50}, benchRow{s.name, "RTT p99 µs", r.P99})
	idle := startLoad(t, loadSpec{Addr: addr, Idle: 1000}, loadCPU)
	idle.await(t, "START")
	time.Sleep(2 * time.Second)
	rows = append(rows, benchRow{s.name, "RSS 1000 clients, 2 s MiB", rssMB(pid, "VmRSS")})
	time.Sleep(28 * time.Second)
	rows = append(rows, benchRow{s.name, "RSS 1000 clients, 30 s MiB", rssMB(pid, "VmRSS")})
	time.Sleep(60 * time.Second)
	rows = append(rows, benchRow{s.name, "RSS 1000 clients, 90 s MiB", rssMB(pid, "VmRSS")},
		benchRow{s.name, "peak RSS MiB", rssMB(pid, "VmHWM")})
	idle.stdin.Close()
	idle.cmd.Wait()
	return rows
}

// printRows prints one line per figure with a column per server and ratios to the others.
func printRows(title string, rows []benchRow, servers []string) {
	var order []string
	all := map[string]map[string][]float64{}
	for _, r := range rows {
		if all[r.what] == nil {
			all[r.what] = map[string][]float64{}
			order = append(order, r.what)
		}
		all[r.what][r.server] = append(all[r.what][r.server], r.value)
	}
	val := map[string]map[string]float64{}
	for w, m := range all {
		val[w] = map[string]float64{}
		for s, vs := range m {
			val[w][s] = median(vs)
		}
	}
	fmt.Printf("\n%s (medians of %d rounds)\n%-36s", title, benchRounds(), "1200-byte packets, TLS")
	for _, s := range servers {
		fmt.Printf(" %11s", s)
	}
	for _, s := range servers[1:] {
		fmt.Printf(" %11s", servers[0][:4]+"/"+s)
	}
	fmt.Println()
	for _, w := range order {
		fmt.Printf("%-36s", w)
		for _, s := range servers {
			if v, ok := val[w][s]; ok {
				fmt.Printf(" %11.1f", v)
			} else {
				fmt.Printf(" %11s", "")
			}
		}
		for _, s := range servers[1:] {
			a, b := val[w][servers[0]], val[w][s]
			if b != 0 && !strings.Contains(w, "loss") {
				fmt.Printf(" %11.2f", a/b)
			}
		}
		fmt.Println()
	}
}

func median(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// printBenchContext says what else runs on the machine: figures from a shared machine are
// noisy, and the reader should know.
func printBenchContext() {
	b, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average before the bench: %s", b)
	out, _ := exec.Command("ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fmt.Printf("busiest processes: %s\n", strings.Join(lines[:min(4, len(lines))], ";"))
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

// cpuTime is a process's CPU seconds in user space and in the kernel.
type cpuTime struct{ user, sys float64 }

func (c cpuTime) total() float64 { return c.user + c.sys }

func cpuTimes(pid int) cpuTime {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTime{}
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return cpuTime{float64(ut) / 100, float64(st) / 100} // USER_HZ
}
