package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/packaging"
)

// TestLoadEmulated is the router's view in `make bench`: our binary and derper, both built
// for a router CPU (linux/mipsle softfloat, the budget target, and arm v7), run under QEMU's
// user-mode emulation on this machine with the same load side by side. On 32-bit MIPS and
// ARM the compiler helpers that amd64 turns into single instructions (math/bits, byte order)
// are calls, and TLS runs ChaCha20-Poly1305 in Go, so what inlining buys shows only here.
// Emulated rates are not a router's, but the ratios between the two servers are what the
// inlining set is chosen by. EDGERELAY_BENCH_EMU_BINS="name=path,..." adds other mipsle
// builds of ours (inlining experiments) to the same run.
func TestLoadEmulated(t *testing.T) {
	if os.Getenv("EDGERELAY_BENCH") != "1" {
		t.Skip("load figures: run with EDGERELAY_BENCH=1 (make bench)")
	}
	for _, arch := range []struct {
		target, qemu string
	}{{"mipsle-softfloat", "qemu-mipsel-static"}, {"armv7", "qemu-arm-static"}} {
		if only := os.Getenv("EDGERELAY_BENCH_EMU"); only != "" && only != arch.target {
			continue
		}
		qemu := testenv.RequireCommand(t, arch.qemu)
		tg := benchTarget(t, arch.target)
		dir := t.TempDir()
		ours := filepath.Join(dir, "edgerelay")
		if err := packaging.CrossBuild(context.Background(), "go", "../..", packaging.MainPackage, tg, "bench", ours); err != nil {
			t.Fatal(err)
		}
		derperBin := filepath.Join(dir, "derper")
		build := exec.Command("go", "build", "-o", derperBin, "tailscale.com/cmd/derper")
		build.Env = append(os.Environ(), tg.Env()...)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building derper for %s: %v\n%s", tg.Name, err, out)
		}
		servers := []benchServer{{"edgerelay", edgerelayCmd(ours, qemu)}, {"derper", derperCmd(derperBin, qemu)}}
		names := []string{"edgerelay", "derper"}
		if extra := os.Getenv("EDGERELAY_BENCH_EMU_BINS"); extra != "" && arch.target == packaging.SizeBudgetTarget {
			for _, kv := range strings.Split(extra, ",") {
				name, path, _ := strings.Cut(kv, "=")
				servers = append(servers, benchServer{name, edgerelayCmd(path, qemu)})
				names = append(names, name)
			}
		}
		var rows []benchRow
		for range benchRounds() {
			for _, s := range servers {
				rows = append(rows, s.emulated(t, benchSeconds(8))...)
			}
		}
		printRows(fmt.Sprintf("%s under %s on this machine (emulated: compare the columns, not the rates with a router's)", tg.Name, arch.qemu), rows, names)
	}
}

// emulatedSteps: one and four pairs unpaced (the delivered rate when the server is the
// bottleneck), and a paced load both servers carry (CPU per packet on the router's CPU).
var emulatedSteps = []step{{pairs: 1}, {pairs: 4}, {pairs: 1, rate: 1000}}

func (s benchServer) emulated(t *testing.T, secs float64) []benchRow {
	cmd, addr := s.launch(t)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var rows []benchRow
	for _, st := range emulatedSteps {
		r, cpu := measure(t, cmd.Process.Pid, st.spec(addr, false, secs), loadCPU)
		rows = append(rows,
			benchRow{s.name, st.String() + " delivered/s", float64(r.Received) / r.Seconds},
			benchRow{s.name, st.String() + " CPU µs/pkt", r.microsPer(cpu.total())})
	}
	return rows
}

func benchTarget(t *testing.T, name string) packaging.Target {
	for _, tg := range packaging.Targets {
		if tg.Name == name {
			return tg
		}
	}
	t.Fatalf("no target %s", name)
	return packaging.Target{}
}
