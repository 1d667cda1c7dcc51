package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// The bench's load and its floor server run as separate processes (this test binary run
// again with an environment variable naming the job), so that the server under test can be
// pinned to one core and the load to the other, and the server's CPU time is its own.

// loadSpec is one load run, passed to the child in EDGERELAY_BENCH_LOAD.
type loadSpec struct {
	Addr    string  // host:port of the server
	Raw     bool    // raw TLS to the floor server instead of DERP clients
	Pairs   int     // sender → receiver pairs
	Rate    float64 // packets/s over all pairs; 0: as fast as the server takes them
	Bursty  bool    // paced per millisecond (what is due, back to back) instead of evenly
	Lock    bool    // lockstep: a pair sends its next packet when the last one arrived
	Seconds float64 // measured window, after a warm-up
	Size    int     // packet bytes
	RTT     int     // when set: time this many round trips on one pair instead
	Idle    int     // when set: connect this many idle clients and hold them until stdin closes
}

// loadResult is what the child reports.
type loadResult struct {
	Sent, Received int64   // packets in the measured window
	Seconds        float64 // its actual length
	P50, P99       float64 // round trips, µs (RTT runs)
	Connected      int     // idle runs
}

// microsPer is sec spread over the packets delivered, in µs per packet.
func (r loadResult) microsPer(sec float64) float64 { return 1e6 * sec / float64(max(r.Received, 1)) }

// loadProc is a running load child.
type loadProc struct {
	cmd   *exec.Cmd
	out   *bufio.Scanner
	stdin io.WriteCloser
}

// startLoad runs spec in a child pinned to cpu (a taskset list; "" for no pinning).
func startLoad(t *testing.T, spec loadSpec, cpu string) *loadProc {
	t.Helper()
	b, _ := json.Marshal(spec)
	args := []string{os.Args[0], "-test.run=^TestBenchLoad$", "-test.count=1"}
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "EDGERELAY_BENCH_LOAD="+string(b), "EDGERELAY_E2E_BIN="+binPath)
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	return &loadProc{cmd: cmd, out: bufio.NewScanner(stdout), stdin: stdin}
}

// await reads the child's output up to a line starting with word and returns its rest.
func (p *loadProc) await(t *testing.T, word string) string {
	t.Helper()
	for p.out.Scan() {
		if rest, ok := strings.CutPrefix(p.out.Text(), word); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("load process ended before %q", word)
	return ""
}

// measure runs spec against the server process pid and returns the load's result and the
// server's CPU time within the measured window (sampled when the child says START and
// when it reports).
func measure(t *testing.T, pid int, spec loadSpec, cpu string) (loadResult, cpuTime) {
	t.Helper()
	p := startLoad(t, spec, cpu)
	p.await(t, "START")
	c0 := cpuTimes(pid)
	line := p.await(t, "RESULT")
	c1 := cpuTimes(pid)
	var r loadResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("load result %q: %v", line, err)
	}
	p.stdin.Close()
	p.cmd.Wait()
	return r, cpuTime{c1.user - c0.user, c1.sys - c0.sys}
}

// TestBenchLoad is the load child: it runs the spec in EDGERELAY_BENCH_LOAD and prints START
// when the measured window begins and RESULT with JSON at its end.
func TestBenchLoad(t *testing.T) {
	env := os.Getenv("EDGERELAY_BENCH_LOAD")
	if env == "" {
		t.Skip("the bench's load process (run by TestLoad)")
	}
	var spec loadSpec
	if err := json.Unmarshal([]byte(env), &spec); err != nil {
		t.Fatal(err)
	}
	// The even pacer spins; with a second P the receivers are woken by the poller at once
	// instead of when the spinning lets the scheduler look (the kernel shares the core).
	runtime.GOMAXPROCS(2)
	var r loadResult
	switch {
	case spec.Idle > 0:
		r.Connected = holdIdle(t, spec)
	case spec.RTT > 0:
		r.P50, r.P99 = roundTrips(t, spec)
	default:
		r = pump(t, spec)
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

// pairConn is one end of a pair: a DERP client, or a raw TLS connection to the floor.
type pairConn interface {
	send(pkt []byte) error
	recv() (packets int, err error) // blocks for at least one packet
	close()
}

func dialPair(t *testing.T, spec loadSpec, i int) (snd, rcv pairConn) {
	if spec.Raw {
		return dialFloor(t, spec.Addr, i, 'S', spec.Size), dialFloor(t, spec.Addr, i, 'R', spec.Size)
	}
	region := benchRegion(spec.Addr)
	s, _ := connectRegion(t, region)
	r, rk := connectRegion(t, region)
	return &derpEnd{c: s, dst: rk}, &derpEnd{c: r}
}

// pump relays Size-byte packets over Pairs pairs, paced at Rate (or as fast as they go), and
// counts what is sent and received in the measured window.
func pump(t *testing.T, spec loadSpec) loadResult {
	var sent, received atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	pkt := make([]byte, spec.Size)
	var ends []pairConn
	t0 := time.Now()
	for i := range spec.Pairs {
		snd, rcv := dialPair(t, spec, i)
		ends = append(ends, snd, rcv)
		arrived := make(chan struct{}, 1)
		wg.Add(2)
		go func() {
			defer wg.Done()
			per := spec.Rate / float64(spec.Pairs)
			var n int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				if per > 0 && n >= int64(time.Since(t0).Seconds()*per) {
					// Paced by the clock, catching up after a stall, never running
					// ahead. Even: one packet at a time, spinning on the load's own
					// core. Bursty: what is due every millisecond, back to back.
					if spec.Bursty {
						time.Sleep(time.Millisecond - time.Since(t0)%time.Millisecond)
					} else {
						runtime.Gosched()
					}
					continue
				}
				if snd.send(pkt) != nil {
					return
				}
				n++
				sent.Add(1)
				if spec.Lock {
					select {
					case <-arrived:
					case <-stop:
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				n, err := rcv.recv()
				if err != nil {
					return
				}
				received.Add(int64(n))
				if n > 0 && spec.Lock {
					arrived <- struct{}{}
				}
			}
		}()
	}
	time.Sleep(time.Second) // warm up
	s0, r0 := sent.Load(), received.Load()
	start := time.Now()
	fmt.Println("START")
	time.Sleep(time.Duration(spec.Seconds * float64(time.Second)))
	r := loadResult{Sent: sent.Load() - s0, Received: received.Load() - r0, Seconds: time.Since(start).Seconds()}
	fmt.Println("STOP") // before the connections close
	close(stop)
	for _, e := range ends {
		e.close()
	}
	wg.Wait()
	return r
}

// roundTrips times RTT round trips A→B→A of Size-byte packets, one at a time.
func roundTrips(t *testing.T, spec loadSpec) (p50, p99 float64) {
	region := benchRegion(spec.Addr)
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
	pkt := make([]byte, spec.Size)
	rtts := make([]float64, 0, spec.RTT)
	fmt.Println("START")
	for range spec.RTT {
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
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100]
}

// holdIdle connects Idle clients, says START, and holds them until stdin closes.
func holdIdle(t *testing.T, spec loadSpec) int {
	region := benchRegion(spec.Addr)
	cs := make([]*derphttp.Client, spec.Idle)
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
	fmt.Println("START")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range cs {
		c.Close()
	}
	return len(cs)
}

func benchRegion(addr string) *tailcfg.DERPRegion {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &tailcfg.DERPRegion{RegionID: 900, RegionCode: "bench", Nodes: []*tailcfg.DERPNode{{
		Name: "900a", RegionID: 900, HostName: host, IPv4: host, DERPPort: p, InsecureForTests: true,
	}}}
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

// derpEnd is a Tailscale DERP client: each Send is one frame, flushed (one TLS record).
type derpEnd struct {
	c   *derphttp.Client
	dst key.NodePublic
}

func (e *derpEnd) send(pkt []byte) error { return e.c.Send(e.dst, pkt) }
func (e *derpEnd) close()                { e.c.Close() }
func (e *derpEnd) recv() (int, error) {
	for {
		m, err := e.c.Recv()
		if err != nil {
			return 0, err
		}
		if _, ok := m.(derp.ReceivedPacket); ok {
			return 1, nil
		}
	}
}

// floorEnd is a raw TLS connection to the floor server. The sender writes what a DERP
// client writes per packet (a SendPacket frame: header, destination key, packet) in one
// record; the receiver counts frames of that size.
type floorEnd struct {
	c     *tls.Conn
	frame []byte
	buf   []byte
	have  int
}

func dialFloor(t *testing.T, addr string, pair int, role byte, size int) *floorEnd {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	hello := []byte{role, 0, 0}
	binary.BigEndian.PutUint16(hello[1:], uint16(pair))
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 5+32+size)
	frame[0] = 4 // SendPacket
	binary.BigEndian.PutUint32(frame[1:], uint32(32+size))
	return &floorEnd{c: c, frame: frame, buf: make([]byte, 32<<10)}
}

func (e *floorEnd) send(pkt []byte) error {
	copy(e.frame[5+32:], pkt)
	_, err := e.c.Write(e.frame)
	return err
}

func (e *floorEnd) close() { e.c.Close() }

func (e *floorEnd) recv() (int, error) {
	n, err := e.c.Read(e.buf)
	e.have += n
	k := e.have / len(e.frame)
	e.have %= len(e.frame)
	return k, err
}

// TestBenchFloor is the floor server: TLS on EDGERELAY_BENCH_FLOOR's address, pairing a
// sender connection with a receiver connection by pair number, then reading records from
// the one and writing them to the other: the cost of TLS in and out per packet, with no
// DERP logic. It runs until killed.
func TestBenchFloor(t *testing.T) {
	addr := os.Getenv("EDGERELAY_BENCH_FLOOR")
	if addr == "" {
		t.Skip("the bench's floor server (run by TestLoad)")
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	waiting := map[[3]byte]chan net.Conn{}
	peer := func(k [3]byte) chan net.Conn {
		mu.Lock()
		defer mu.Unlock()
		if waiting[k] == nil {
			waiting[k] = make(chan net.Conn, 1)
		}
		return waiting[k]
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			var h [3]byte
			if _, err := io.ReadFull(c, h[:]); err != nil {
				c.Close()
				return
			}
			k := h
			if h[0] == 'R' {
				k[0] = 'S'
				peer(k) <- c // the sender's goroutine forwards to it
				return
			}
			dst := <-peer(k)
			buf := make([]byte, 16<<10)
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					break
				}
			}
			c.Close()
			dst.Close()
		}()
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
