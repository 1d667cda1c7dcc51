package derp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientInfoLimits(t *testing.T) {
	s := newTestServer(t)
	// One byte over the cap is refused from the header alone, before any body arrives.
	out, err := serve(t, s, []byte{frameClientInfo, 0, 0, 0x10, 0x01}, 0)
	if err == nil || !strings.Contains(err.Error(), "ClientInfo length 4097 outside") {
		t.Fatalf("err %v", err)
	}
	if got := frames(out); !bytes.Equal(got, []byte{frameServerKey}) {
		t.Fatalf("frames %x", got)
	}
	// A frame that announces the cap but sends 100 bytes costs about those 100 bytes.
	in := append([]byte{frameClientInfo, 0, 0, 0x10, 0x00}, make([]byte, 100)...)
	var before, after runtime.MemStats
	const runs = 200
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := readClientInfo(bufio.NewReaderSize(bytes.NewReader(in), 16), s.priv); err == nil {
			t.Fatal("truncated ClientInfo accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2048 && !raceEnabled {
		t.Fatalf("%d bytes allocated per truncated ClientInfo of 100 bytes", per)
	}
	// What is kept is the key and the fields used later: AppName is not among them.
	priv := newPriv(t)
	h, err := parseClientInfo(sealedClientInfo(t, s, priv, clientInfo{Version: 2, IsProber: true, AppName: strings.Repeat("x", 3000)}), s.priv)
	if err != nil || h.key != priv.Public() || !h.isProber {
		t.Fatalf("hello %+v, err %v", h, err)
	}
}

func sealedClientInfo(t testing.TB, s *Server, priv PrivateKey, info clientInfo) []byte {
	t.Helper()
	msg, _ := json.Marshal(info)
	sealed, err := priv.sealTo(s.pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public()
	return append(pub[:], sealed...)
}

// pipeClient is a client connected to s over a pipe; its reads are up to the test.
type pipeClient struct {
	nc   net.Conn
	br   *bufio.Reader
	done chan error // the server side's end
}

// connectPipe does the client's handshake with priv and returns once ServerInfo arrived.
func connectPipe(t testing.TB, s *Server, priv PrivateKey) *pipeClient {
	t.Helper()
	srv, cli := net.Pipe()
	return connectOver(t, s, priv, srv, cli)
}

// connectOver is connectPipe over a given connection pair.
func connectOver(t testing.TB, s *Server, priv PrivateKey, srv, cli net.Conn) *pipeClient {
	t.Helper()
	pc := &pipeClient{nc: cli, br: bufio.NewReader(cli), done: make(chan error, 1)}
	go func() {
		pc.done <- s.HandleConn(context.Background(), srv, bufio.NewReader(srv), bufio.NewWriter(srv), netip.MustParseAddrPort("192.0.2.1:1"))
	}()
	t.Cleanup(func() { cli.Close() })
	if _, err := readServerKey(pc.br); err != nil {
		t.Fatal(err)
	}
	go cli.Write(frame(frameClientInfo, sealedClientInfo(t, s, priv, clientInfo{Version: 2})))
	if _, err := readServerInfo(pc.br, priv, s.pub); err != nil {
		t.Fatal(err)
	}
	return pc
}

// closedByServer reports whether the server ended the connection (reads hit EOF).
func (pc *pipeClient) closedByServer() bool {
	pc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, pc.br)
	return err == nil || errors.Is(err, io.ErrClosedPipe)
}

func TestDuplicateConnectionsCapped(t *testing.T) {
	priv, _ := NewPrivateKey()
	s, err := NewServer(priv, Options{MaxConnsPerKey: 2})
	if err != nil {
		t.Fatal(err)
	}
	k := newPriv(t)
	var cs []*pipeClient
	for range 4 {
		cs = append(cs, connectPipe(t, s, k))
	}
	// The two that were quiet longest (the first two) were closed for the two newest.
	for i, c := range cs[:2] {
		if !c.closedByServer() {
			t.Fatalf("connection %d was not closed", i)
		}
	}
	waitFor(t, "the closed duplicates to leave", func() bool { return s.stats.CurrentConns.Load() == 2 })
	if got := s.stats.DupEvicted.Load(); got != 2 {
		t.Fatalf("DupEvicted = %d, want 2", got)
	}
	// Another key is not affected.
	connectPipe(t, s, newPriv(t))
	if s.stats.CurrentConns.Load() != 3 {
		t.Fatalf("%d connections", s.stats.CurrentConns.Load())
	}
}

func TestQueueByteBudgets(t *testing.T) {
	priv, _ := NewPrivateKey()
	s, err := NewServer(priv, Options{QueueBytes: 2 * MaxPacketSize, QueueBytesTotal: 5 * MaxPacketSize, WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Three receivers that never read: the sender of each blocks on its first packet, which
	// stays counted until it is written.
	var rcv []Key
	var clients []*pipeClient
	for range 3 {
		k := newPriv(t)
		clients = append(clients, connectPipe(t, s, k))
		rcv = append(rcv, k.Public())
	}
	big := func() packet { return newPacket(MaxPacketSize) }
	for range 4 {
		s.deliver(nil, rcv[0], big())
	}
	// Two fit receiver 0's budget; each of the other two pushed an older one out.
	if got := s.stats.PacketsDropped[dropQueueBytes].Load(); got != 2 {
		t.Fatalf("queue_bytes drops = %d, want 2", got)
	}
	s.deliver(nil, rcv[1], big())
	s.deliver(nil, rcv[1], big())
	s.deliver(nil, rcv[2], big()) // the fifth: the total is spent now
	for range 3 {
		s.deliver(nil, rcv[2], big())
	}
	if got := s.stats.PacketsDropped[dropTotalQueueBytes].Load(); got != 3 {
		t.Fatalf("total_queue_bytes drops = %d, want 3", got)
	}
	if used, limit := s.QueuedBytes(); used != limit {
		t.Fatalf("queued %d of %d bytes", used, limit)
	}
	// Small disco packets make room by pushing out bulk data, not each other.
	s.deliver(nil, rcv[0], discoPacket())
	if got := s.stats.PacketsDropped[dropQueueBytes].Load(); got != 3 {
		t.Fatalf("queue_bytes drops = %d after a disco packet, want 3", got)
	}
	// Everything is given back when the receivers go.
	for _, c := range clients {
		c.nc.Close()
		<-c.done
	}
	if used, _ := s.QueuedBytes(); used != 0 {
		t.Fatalf("%d bytes still counted as queued", used)
	}
}

func discoPacket() packet {
	p := newPacket(discoHeaderLen + 16)
	copy(p.data(), discoMagic)
	p.disco = true
	return p
}

// logRecords captures log records for tests.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		line := r.Message
		r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		out = append(out, line)
	}
	return out
}

func TestRefusalLogSummarises(t *testing.T) {
	var recs logRecords
	r := newRefusalLog(slog.New(&recs))
	r.window = 200 * time.Millisecond
	flood := netip.MustParseAddr("198.51.100.7")
	refused := errors.New("not in the allow list")
	retrier := newPriv(t).Public()
	for range 100 {
		r.note(newPriv(t).Public(), flood, refused)
		r.note(retrier, netip.MustParseAddr("198.51.100.8"), refused) // one client retrying
	}
	for i := range 40 { // one key each from many addresses: the window's line budget
		r.note(newPriv(t).Public(), netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), refused)
	}
	during := recs.messages()
	if len(during) != refusalLinesPerWindow {
		t.Fatalf("%d lines logged during the window, want %d:\n%s", len(during), refusalLinesPerWindow, strings.Join(during, "\n"))
	}
	if n := strings.Count(strings.Join(during, "\n"), "source=198.51.100.7"); n != refusalLinesPerSource {
		t.Fatalf("%d lines about the flooding address, want %d", n, refusalLinesPerSource)
	}
	waitFor(t, "the window's summary", func() bool { return len(recs.messages()) > len(during) })
	summary := strings.Join(recs.messages()[len(during):], "\n")
	for _, want := range []string{
		"clients refused in the last minute source=198.51.100.7 count=100 not_logged=97",
		"clients refused in the last minute source=other addresses",
	} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if strings.Contains(summary, "198.51.100.8") {
		t.Errorf("a client retrying with one key was summarised:\n%s", summary)
	}
}

// TestKeepAlives: every client gets KeepAlive frames from the server's one sweep, each
// about once per interval, while it sends nothing.
func TestKeepAlives(t *testing.T) {
	priv, _ := NewPrivateKey()
	s, err := NewServer(priv, Options{KeepAlive: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		pc := connectPipe(t, s, newPriv(t))
		start := time.Now()
		for n := 0; n < 3; {
			pc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, l, err := readFrameHeader(pc.br)
			if err != nil {
				t.Fatalf("client %d after %d keepalives: %v", i, n, err)
			}
			if typ == frameKeepAlive {
				n++
			}
			if err := discard(pc.br, l); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took < 400*time.Millisecond {
			t.Fatalf("client %d: 3 keepalives in %v with an interval of 200ms", i, took)
		}
		pc.nc.SetReadDeadline(time.Time{})
		go io.Copy(io.Discard, pc.br) // keep reading, so no write waits on the pipe
	}
	// Between keepalives the sweep retires the senders: idle connections keep no goroutine
	// but their reader.
	waitFor(t, "the idle senders to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			c.mu.Lock()
			sending := c.sending
			c.mu.Unlock()
			if sending {
				return false
			}
		}
		return true
	})
}

// BenchmarkRelayPacket relays 1,200-byte packets between two clients on pipes (no TLS):
// the server's own cost per packet, whose allocs/op must stay 0.
func BenchmarkRelayPacket(b *testing.B) {
	s := newTestServer(b)
	defer s.Close()
	src, dst := connectPipe(b, s, newPriv(b)), newPriv(b)
	rcv := connectPipe(b, s, dst)
	pub := dst.Public()
	f := frame(frameSendPacket, append(pub[:], make([]byte, 1200)...))
	const window = 16 // below the queue depth: nothing is dropped
	sem := make(chan struct{}, window)
	go func() {
		for range b.N {
			sem <- struct{}{}
			if _, err := src.nc.Write(f); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, frameHeaderLen+keyLen+1200)
	b.SetBytes(1200)
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		typ, n, err := readFrameHeader(rcv.br)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rcv.br, buf[:n]); err != nil {
			b.Fatal(err)
		}
		if typ == frameRecvPacket {
			got++
			<-sem
		}
	}
	b.StopTimer() // Close waits for senders blocked on the pipes
}

// TestServerInfoFirst: a client that others are already sending to gets ServerInfo before
// any packet, whether the packets come through its sender (a pipe) or are written directly
// by the sender's reader (a TCP socket under NewListener, direct.go).
func TestServerInfoFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sln := NewListener(ln)
	tcpPair := func() (srv, cli net.Conn) {
		cli, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if srv, err = sln.Accept(); err != nil {
			t.Fatal(err)
		}
		return srv, cli
	}
	for _, tc := range []struct {
		name string
		pair func() (srv, cli net.Conn)
	}{{"sender", net.Pipe}, {"direct", tcpPair}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			dst := newPriv(t)
			dstPub := dst.Public()
			flood := connectPipe(t, s, newPriv(t))
			go func() {
				f := frame(frameSendPacket, append(dstPub[:], make([]byte, 100)...))
				for {
					if _, err := flood.nc.Write(f); err != nil {
						return
					}
				}
			}()
			for range 200 {
				srv, cli := tc.pair()
				pc := connectOver(t, s, dst, srv, cli)
				pc.nc.Close()
			}
		})
	}
}
