package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/relay/derptest"
)

// TestSoak is `make soak`: the built daemon, under the OpenWrt package's GOMEMLIMIT for a
// 128 MB router and an allow list, for EDGERELAY_SOAK_MINUTES with
//   - idle clients that stay connected throughout,
//   - clients that connect, talk to random peers and leave at random,
//   - steady relayed traffic between fixed pairs,
//   - issue 15's attacks, one every soakAttackEvery, small and from their own addresses.
//
// Every minute it samples the daemon (RSS from /proc, goroutines, heap, descriptors,
// clients) and prints the curve at the end. It fails if the daemon dies, if RSS,
// goroutines or descriptors grow from the first third of the run to the last, or if they
// do not come back once the load is gone. Not part of `make test`.
func TestSoak(t *testing.T) {
	minutes, _ := strconv.Atoi(os.Getenv("EDGERELAY_SOAK_MINUTES"))
	if minutes <= 0 {
		t.Skip("soak: set EDGERELAY_SOAK_MINUTES (make soak)")
	}
	const (
		idle     = 300
		churners = 100
		pairs    = 8
		insiders = 4 // allow-listed keys the attacks use
	)
	keys := idle + 2*churners + 2*pairs + insiders
	tg := startTarget(t, keys, "")
	pool := tg.inside
	idleKeys, pool := pool[:idle], pool[idle:]
	churnKeys, pool := pool[:2*churners], pool[2*churners:]
	pairKeys, attackKeys := pool[:2*pairs], pool[2*pairs:]
	pid := tg.d.cmd.Process.Pid

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(minutes)*time.Minute)
	defer cancel()
	var load sync.WaitGroup
	var ld soakLoad
	for i, k := range idleKeys {
		load.Add(1)
		go func() { defer load.Done(); ld.idleClient(ctx, tg, k, i) }()
		time.Sleep(20 * time.Millisecond) // as a tailnet comes up, not all at once
	}
	for i := range pairs {
		load.Add(1)
		go func() { defer load.Done(); ld.steadyPair(ctx, tg, pairKeys[2*i], pairKeys[2*i+1], idle+i) }()
	}
	for i := range churners {
		load.Add(1)
		go func() {
			defer load.Done()
			ld.churner(ctx, tg, churnKeys[2*i:2*i+2], idleKeys, idle+pairs+i)
		}()
	}
	load.Add(1)
	go func() { defer load.Done(); ld.attacks(ctx, tg, attackKeys) }()

	var samples []soakSample
	sample := func(minute int) soakSample {
		st := tg.status()
		s := soakSample{minute: minute, rss: tg.rss(), heap: float64(st.Memory.HeapBytes) / (1 << 20),
			goroutines: st.Memory.Goroutines, fds: countFDs(pid), clients: st.Relay.Clients, pending: st.Relay.Pending,
			relayed: st.Relay.PacketsOut, steady: ld.steadyRecv.Load(), attacks: ld.attacksRun.Load()}
		t.Logf("soak %s", s)
		return s
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for minute := 1; ctx.Err() == nil; minute++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		samples = append(samples, sample(minute))
		select {
		case err := <-tg.d.exited:
			tg.d.exited <- err
			t.Fatalf("daemon died after %d minutes: %v", minute, err)
		default:
		}
	}
	load.Wait()

	// With every client gone the daemon must be back near where it started.
	var end soakSample
	deadline := time.Now().Add(2 * time.Minute)
	for {
		end = sample(minutes + 1)
		if end.clients == 0 && end.pending == 0 && end.fds <= 20 && end.rss <= tg.idleMB+8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("soak curve (one row a minute; last row: load gone):\n%s", soakTable(append(samples, end)))
	t.Logf("soak done after %d min: peak RSS %.1f MB; %d connection cycles, steady pairs %d sent / %d received, %d attacks",
		minutes, tg.peak(), ld.cycles.Load(), ld.steadySent.Load(), ld.steadyRecv.Load(), ld.attacksRun.Load())
	if end.clients != 0 || end.pending != 0 || end.fds > 20 || end.rss > tg.idleMB+8 {
		t.Errorf("after the load: %d clients, %d pending, %d descriptors, RSS %.1f MB (idle %.1f)", end.clients, end.pending, end.fds, end.rss, tg.idleMB)
	}
	if n := len(samples); n >= 6 {
		first, last := samples[1:1+n/3], samples[n-n/3:] // minute 1 is still warming up
		med := func(ss []soakSample, f func(soakSample) float64) float64 {
			v := make([]float64, len(ss))
			for i, s := range ss {
				v[i] = f(s)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		for _, m := range []struct {
			name  string
			f     func(soakSample) float64
			slack float64
		}{
			{"RSS MB", func(s soakSample) float64 { return s.rss }, 4},
			{"goroutines", func(s soakSample) float64 { return float64(s.goroutines) }, 50},
			{"descriptors", func(s soakSample) float64 { return float64(s.fds) }, 50},
		} {
			a, b := med(first, m.f), med(last, m.f)
			t.Logf("soak %s: median %.1f in the first third, %.1f in the last", m.name, a, b)
			if b > a*1.1+m.slack {
				t.Errorf("%s grew from %.1f to %.1f", m.name, a, b)
			}
		}
	}
	if tg.peak() >= attackRSSLimitMB {
		t.Errorf("peak RSS %.1f MB, want under %d MB", tg.peak(), attackRSSLimitMB)
	}
}

type soakSample struct {
	minute           int
	rss, heap        float64
	goroutines, fds  int
	clients, pending int64
	relayed, steady  int64
	attacks          int64
}

func (s soakSample) String() string {
	return fmt.Sprintf("%4d %7.1f %7.1f %6d %5d %7d %7d %11d %10d %7d", s.minute, s.rss, s.heap, s.goroutines, s.fds,
		s.clients, s.pending, s.relayed, s.steady, s.attacks)
}

func soakTable(ss []soakSample) string {
	var b strings.Builder
	b.WriteString(" min  RSS MB heap MB gorout   fds clients pending pkts relayed steady rcvd attacks\n")
	for _, s := range ss {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

// soakLoad drives the soak's clients and keeps its counts.
type soakLoad struct {
	cycles, steadySent, steadyRecv, attacksRun atomic.Int64
}

// clientDialer gives legitimate client n its own address (127.0.1.x): a tailnet's devices
// come from many addresses, and per-source limits should see them so.
func clientDialer(n int) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+n%250))}}
}

// connectSoak connects k from address n and waits for ServerInfo; it retries until ctx ends
// (a soak client, like tailscaled, keeps trying).
func connectSoak(ctx context.Context, tg *target, k key.NodePrivate, n int) (*derp.Client, net.Conn) {
	for ctx.Err() == nil {
		dc, c, err := derptest.Dial(tg.node(), k, clientDialer(n))
		if err == nil {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if m, err := dc.Recv(); err == nil {
				if _, ok := m.(derp.ServerInfoMessage); ok {
					c.SetReadDeadline(time.Time{})
					return dc, c
				}
			}
			c.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second + rand.N(time.Second)):
		}
	}
	return nil, nil
}

// drain reads (and drops) everything the server sends until the connection ends, counting
// packets in got when it is not nil.
func drainClient(dc *derp.Client, got *atomic.Int64) {
	for {
		m, err := dc.Recv()
		if err != nil {
			return
		}
		if _, ok := m.(derp.ReceivedPacket); ok && got != nil {
			got.Add(1)
		}
	}
}

// idleClient stays connected (reconnecting if it must) and only reads keepalives.
func (ld *soakLoad) idleClient(ctx context.Context, tg *target, k key.NodePrivate, n int) {
	for ctx.Err() == nil {
		dc, c := connectSoak(ctx, tg, k, n)
		if dc == nil {
			return
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		drainClient(dc, nil)
		stop()
		c.Close()
	}
}

// steadyPair relays 1200-byte packets from a to b at 100 a second.
func (ld *soakLoad) steadyPair(ctx context.Context, tg *target, a, b key.NodePrivate, n int) {
	rdc, rc := connectSoak(ctx, tg, b, n)
	if rdc == nil {
		return
	}
	defer rc.Close()
	go drainClient(rdc, &ld.steadyRecv)
	sdc, sc := connectSoak(ctx, tg, a, n)
	if sdc == nil {
		return
	}
	defer sc.Close()
	go drainClient(sdc, nil)
	pkt := make([]byte, 1200)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if sdc.Send(b.Public(), pkt) == nil {
			ld.steadySent.Add(1)
		}
	}
}

// churner connects with one of its keys, sends to random idle clients for 1-20 s, leaves,
// and starts over with its other key.
func (ld *soakLoad) churner(ctx context.Context, tg *target, own, peers []key.NodePrivate, n int) {
	for cycle := 0; ctx.Err() == nil; cycle++ {
		dc, c := connectSoak(ctx, tg, own[cycle%2], n)
		if dc == nil {
			return
		}
		go drainClient(dc, nil)
		life := time.After(time.Second + rand.N(19*time.Second))
	talk:
		for {
			select {
			case <-ctx.Done():
				break talk
			case <-life:
				break talk
			case <-time.After(rand.N(50 * time.Millisecond)):
				dc.Send(peers[rand.IntN(len(peers))].Public(), make([]byte, 100+rand.IntN(1300)))
			}
		}
		c.Close()
		ld.cycles.Add(1)
	}
}

// soakAttackEvery paces the soak's attacks: one at a time, in turn, each holding what it
// opened for soakAttackHold.
const (
	soakAttackEvery = 15 * time.Second
	soakAttackHold  = 30 * time.Second
)

// attacks runs issue 15's attacks at a low rate, from 127.0.0.2-9. insiders are four
// allow-listed keys (a compromised node's).
func (ld *soakLoad) attacks(ctx context.Context, tg *target, insiders []key.NodePrivate) {
	a := &attacker{sources: 8}
	kinds := []func(h *held){
		func(h *held) { // ClientInfo frames announcing 256 KiB
			for i := range 20 {
				if c, err := tg.tlsUpgrade(a.dialer()); err == nil {
					h.add(c)
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					c.Write([]byte{0x02, 0x00, 0x04, 0x00, 0x00})
					if i%2 == 0 {
						c.Write(make([]byte, 200<<10))
					}
				}
			}
		},
		func(h *held) { // one key, ten connections, large AppName
			for range 10 {
				if _, c, err := derptest.Dial(tg.node(), insiders[0], a.dialer(), derp.AppName(strings.Repeat("x", 3000))); err == nil {
					h.add(c)
				}
			}
		},
		func(h *held) { // a receiver that never reads, sent 300 packets of 64 KiB
			_, rc, err := derptest.Dial(tg.node(), insiders[1], smallRecvBuf(a.dialer()))
			if err != nil {
				return
			}
			h.add(rc)
			sdc, sc, err := derptest.Dial(tg.node(), insiders[2], a.dialer())
			if err != nil {
				return
			}
			h.add(sc)
			go drainClient(sdc, nil)
			pkt := make([]byte, 64<<10)
			for range 300 {
				if sdc.Send(insiders[1].Public(), pkt) != nil {
					return
				}
			}
		},
		func(h *held) { // keep-alive /generate_204 connections
			for range 30 {
				c, err := tls.DialWithDialer(a.dialer(), "tcp", tg.addr(), derptest.TLSConfig(tg.node(), nil))
				if err != nil {
					continue
				}
				h.add(c)
				fmt.Fprintf(c, "GET /generate_204 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			}
		},
		func(h *held) { // idle TCP connections from one address
			d := a.dialer()
			for range 100 {
				if c, err := d.Dial("tcp", tg.addr()); err == nil {
					h.add(c)
				}
			}
		},
		func(h *held) { // keys the allow list refuses
			for range 20 {
				if _, c, err := derptest.Dial(tg.node(), key.NewNode(), a.dialer()); err == nil {
					h.add(c)
				}
			}
		},
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(soakAttackEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h := &held{}
		kinds[i%len(kinds)](h)
		ld.attacksRun.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
			case <-time.After(soakAttackHold):
			}
			h.closeAll()
		}()
	}
}

func countFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}
