package verify

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"tailscale.com/ipn"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// listenIn opens a TCP listener on loopback inside namespace ns. It runs on a goroutine of
// its own that never unlocks its OS thread, so the thread (which switched namespaces) is
// discarded afterwards instead of being reused.
func listenIn(t *testing.T, ns string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in netns %s: %v", ns, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// TestRealTailnet is derper --verify-clients with real parts: a real tailscaled v1.102.0
// logs in to Tailscale's test control server (both in a namespace holding only loopback),
// gets a netmap with a peer, and uses our DERP server as its home relay. The verifier asks
// that tailscaled: its own key and its peer's are admitted from real 200 whois answers, a
// stranger is refused, and tailscaled's own DERP connection is admitted.
func TestRealTailnet(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetNS(t, testenv.RequireCommand(t, "ip"))
	fakeUplink(t, ns)
	dir, sock := testenv.TailscaledDir(t)
	v, err := New(Config{TailscaledSocket: sock}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	derpSrv, region := serveDERP(t, v, listenIn(t, ns))
	region.Nodes[0].STUNPort = -1

	ctlLn := listenIn(t, ns)
	control := &testcontrol.Server{
		DERPMap:         &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{900: region}},
		ExplicitBaseURL: "http://" + ctlLn.Addr().String(),
		Logf:            t.Logf,
	}
	control.AddFakeNode() // the peer, present before tailscaled's first netmap
	ctlSrv := &http.Server{Handler: control}
	go ctlSrv.Serve(ctlLn)
	t.Cleanup(func() { ctlSrv.Close() })

	lc := testenv.StartTailscaled(t, ns, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	prefs := ipn.NewPrefs()
	prefs.ControlURL = control.ExplicitBaseURL
	prefs.WantRunning = true
	prefs.Hostname = "relaybox"
	if err := lc.Start(ctx, ipn.Options{AuthKey: "tskey-test", UpdatePrefs: prefs}); err != nil {
		t.Fatal(err)
	}
	if err := lc.StartLoginInteractive(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var self key.NodePublic
	for {
		st, err := lc.Status(ctx)
		if err == nil && st.BackendState == ipn.Running.String() && st.Self != nil && len(st.Peer) > 0 {
			self = st.Self.PublicKey
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("tailscaled not running with a peer: %v %+v", err, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("tailscaled running after %v", time.Since(start).Round(time.Millisecond))

	var peer key.NodePublic
	for _, n := range control.AllNodes() {
		if n.Key != self {
			peer = n.Key
		}
	}
	for name, k := range map[string]key.NodePublic{"self": self, "peer": peer} {
		if err := v.Check(ctx, raw(k), src1); err != nil {
			t.Errorf("%s %s refused: %v", name, k.ShortString(), err)
		}
	}
	if err := v.Check(ctx, randomKey(t), src1); !errors.Is(err, ErrNotInNetmap) {
		t.Errorf("stranger: %v", err)
	}

	// tailscaled's magicsock connects to its home DERP region: ours.
	for derpSrv.Stats().CurrentConns.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatalf("tailscaled never connected to our DERP server; verifier %+v, rejected %d", v.Stats(), derpSrv.Stats().Rejected.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := v.Stats()
	t.Logf("tailscaled connected to our DERP after %v; verifier %+v", time.Since(start).Round(time.Millisecond), st)
	if st.Tailscaled.Admitted < 3 || derpSrv.Stats().Rejected.Load() != 0 {
		t.Errorf("tailscaled's own connection not admitted by whois: %+v, rejected %d", st, derpSrv.Stats().Rejected.Load())
	}
}
