package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/netfilter"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"github.com/edgerelay/edgerelay/notify"
	"github.com/edgerelay/edgerelay/relay"
)

// Status is what `edgerelay status` shows: the state the agent owns and each part's own.
type Status struct {
	Version   string                 `json:"version"`
	Config    string                 `json:"config"`
	Started   time.Time              `json:"started"`
	Loaded    time.Time              `json:"config_loaded"` // when the running config was (re)read
	Uptime    string                 `json:"uptime"`
	Warnings  []string               `json:"warnings,omitempty"`
	Addrs     relay.Addrs            `json:"addresses"` // the line's current addresses (from ddns)
	Relay     *relay.Status          `json:"relay,omitempty"`
	DERPMap   *relay.Map             `json:"derp_map,omitempty"`       // the relay's map to paste, as of now
	MapStale  bool                   `json:"derp_map_stale,omitempty"` // the map handed out last no longer matches
	DDNS      []ddns.RecordState     `json:"ddns,omitempty"`
	ACME      *ACMEStatus            `json:"acme,omitempty"`
	Subnet    *SubnetStatus          `json:"subnet,omitempty"`
	PeerRelay *peerrelay.Status      `json:"peer_relay,omitempty"`
	Webhooks  []notify.WebhookStatus `json:"webhooks,omitempty"`
	Parts     map[string]string      `json:"parts"` // name → "running" or the last error
	Memory    MemoryStatus           `json:"memory"`
}

// ACMEStatus is the certificate the acme part holds.
type ACMEStatus struct {
	Domains     []string  `json:"domains"`
	Issuer      string    `json:"issuer,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	NextRenewal time.Time `json:"next_renewal,omitzero"`
}

// SubnetStatus is the last reconcile of the subnet part (Checked zero: none finished yet).
type SubnetStatus struct {
	Items   []string  `json:"items"`
	InPlace bool      `json:"in_place"`
	Error   string    `json:"error,omitempty"`
	Checked time.Time `json:"checked,omitzero"`
}

// subnetStatus is what the subnet part published after an apply: its report and error.
func subnetStatus(rep netfilter.Report, err error) *SubnetStatus {
	ss := &SubnetStatus{InPlace: rep.InPlace() && err == nil, Checked: time.Now()}
	if err != nil {
		ss.Error = err.Error()
	}
	for _, it := range rep.Items {
		state := "in place"
		if !it.InPlace {
			state = fmt.Sprintf("NOT in place (want %s, have %s)", it.Want, it.Have)
		}
		ss.Items = append(ss.Items, fmt.Sprintf("%s %s: %s", it.Kind, it.Name, state))
	}
	return ss
}

// MemoryStatus is the Go runtime's view of the process.
type MemoryStatus struct {
	HeapBytes  uint64 `json:"heap_bytes"`  // live and not yet collected
	HeapInuse  uint64 `json:"heap_inuse"`  // in spans holding objects
	StackBytes uint64 `json:"stack_bytes"` // goroutine stacks
	SysBytes   uint64 `json:"sys_bytes"`
	Goroutines int    `json:"goroutines"`
}

// StatusSocket is where the daemon answers `edgerelay status`.
func StatusSocket(stateDir string) string { return filepath.Join(stateDir, "status.sock") }

// Status gathers the current state: what the parts last published and the relay's
// counters. It never waits on a part's work or runs a command (`subnet show` is the live
// view).
func (a *Agent) Status(context.Context) Status {
	a.mu.Lock()
	r, m, n := a.relay, a.acme, a.notifier
	st := Status{
		Version: a.Version, Config: a.cfg.Source, Started: a.started, Loaded: a.loaded, Addrs: a.addrs,
		Uptime: time.Since(a.started).Round(time.Second).String(), Parts: map[string]string{},
		DDNS: a.ddnsState, ACME: a.acmeState, Subnet: a.subnetState, PeerRelay: a.peerRelayState,
	}
	for name, err := range a.partErr {
		st.Parts[name] = "running"
		if err != nil {
			st.Parts[name] = err.Error()
		}
	}
	if a.dmap != nil {
		dm := *a.dmap
		st.DERPMap = &dm
	}
	if st.ACME != nil && m != nil {
		as := *st.ACME
		as.NextRenewal = m.NextRenewal()
		st.ACME = &as
	}
	stale := a.staleLocked()
	a.mu.Unlock()
	if st.Config == "" {
		st.Config = "built-in default"
	}
	if n != nil {
		st.Webhooks = n.Status()
	}
	if r != nil {
		rs := r.Status()
		st.Relay = &rs
		if w := r.Warning(); w != "" {
			st.Warnings = append(st.Warnings, w)
		}
	}
	if stale != "" {
		st.Warnings = append(st.Warnings, stale)
		st.MapStale = true
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.Memory = MemoryStatus{HeapBytes: ms.HeapAlloc, HeapInuse: ms.HeapInuse, StackBytes: ms.StackInuse,
		SysBytes: ms.Sys, Goroutines: runtime.NumGoroutine()}
	return st
}

// serveStatus answers on the unix socket (0600: status shows keys and addresses) until ctx
// ends, and on metrics_listen with Prometheus text when configured.
func (a *Agent) serveStatus(ctx context.Context, stateDir, metricsListen string) error {
	path := StatusSocket(stateDir)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	os.Remove(path) // a stale socket from a crash
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("status socket: %w", err)
	}
	os.Chmod(path, 0o600)
	// A switch, not an http.ServeMux: the mux's pattern registration is about 30 KB of the
	// mipsle binary (relay.Handler routes the same way).
	status := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/status":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(a.Status(req.Context()))
		case "/metrics":
			a.writeMetrics(w, req)
		case "/derpmap":
			// GET: the relay's map to paste; POST: the same, recorded as handed out for pasting.
			get := a.DERPMap
			if req.Method == http.MethodPost {
				get = a.HandOut
			}
			m, ok := get()
			if !ok {
				http.Error(w, "the relay has no DERP map (off, or not listening yet)", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(m)
		default:
			http.NotFound(w, req)
		}
	})
	srvs := []*http.Server{{Handler: status, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}}
	lns := []net.Listener{ln}
	if metricsListen != "" {
		mln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		metrics := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path != "/metrics" {
				http.NotFound(w, req)
				return
			}
			a.writeMetrics(w, req)
		})
		srvs = append(srvs, &http.Server{Handler: metrics, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute})
		lns = append(lns, mln)
	}
	errc := make(chan error, len(srvs))
	for i, s := range srvs {
		go func() { errc <- s.Serve(lns[i]) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, s := range srvs {
		s.Close()
	}
	os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (a *Agent) writeMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	a.mu.Lock()
	r, cert := a.relay, a.acmeState
	started := a.started
	a.mu.Unlock()
	if r != nil {
		r.WriteMetrics(w)
	}
	if cert != nil {
		if exp := cert.NotAfter; !exp.IsZero() {
			fmt.Fprintf(w, "# HELP edgerelay_cert_not_after_seconds Expiry of the ACME certificate.\n# TYPE edgerelay_cert_not_after_seconds gauge\nedgerelay_cert_not_after_seconds %d\n", exp.Unix())
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	// The names and meanings of Prometheus' Go collector, so stock dashboards show where a
	// router's memory goes (live heap, stacks, what is free but not yet returned).
	for _, g := range []struct {
		name string
		v    uint64
	}{
		{"sys_bytes", ms.Sys},
		{"heap_alloc_bytes", ms.HeapAlloc},
		{"heap_inuse_bytes", ms.HeapInuse},
		{"heap_idle_bytes", ms.HeapIdle},
		{"heap_released_bytes", ms.HeapReleased},
		{"stack_inuse_bytes", ms.StackInuse},
		{"next_gc_bytes", ms.NextGC},
	} {
		fmt.Fprintf(w, "# TYPE go_memstats_%s gauge\ngo_memstats_%s %d\n", g.name, g.name, g.v)
	}
	fmt.Fprintf(w, "# TYPE go_gc_cycles_total counter\ngo_gc_cycles_total %d\n", ms.NumGC)
	fmt.Fprintf(w, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %d\n", started.Unix())
}

// QueryStatus asks the daemon whose state dir is stateDir for its status.
func QueryStatus(ctx context.Context, stateDir string) (*Status, error) {
	var st Status
	return &st, ask(ctx, stateDir, http.MethodGet, "/status", &st)
}

// HandOutMap asks the daemon for its relay's map to paste and has it recorded as pasted.
func HandOutMap(ctx context.Context, stateDir string) (relay.Map, error) {
	var m relay.Map
	return m, ask(ctx, stateDir, http.MethodPost, "/derpmap", &m)
}

// ask sends one request to the daemon's status socket and decodes its JSON answer into v.
func ask(ctx context.Context, stateDir, method, path string, v any) error {
	sock := StatusSocket(stateDir)
	hc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true, // one question per call; no idle connection left on the daemon
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	req, _ := http.NewRequestWithContext(ctx, method, "http://edgerelay"+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s reply: %w", path, err)
	}
	return nil
}
