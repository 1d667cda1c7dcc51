// Command edgerelay is the daemon and its CLI: run, check, derpmap, version (and the
// subcommands the parts add). Flags, subcommands and wiring only; the work lives in the parts.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/edgerelay/edgerelay/agent"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/netfilter/peerrelay"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/verify"
	"github.com/edgerelay/edgerelay/web"
)

// version is stamped at build time (-ldflags -X main.version=...).
var version = "dev"

const usage = `edgerelay — DERP relay, STUN, DDNS, ACME and subnet-router prep for home routers and NAS boxes

Usage:
  edgerelay run     [-c FILE]     run the daemon in the foreground
  edgerelay check   [-c FILE]     validate the config; print every problem; exit 1 if any
  edgerelay derpmap [-c FILE] [--format tailscale|json|yaml|headscale]
                                  print this node's DERP map entry
  edgerelay status  [-c FILE] [--json]
                                  ask the running daemon: clients, traffic, cert, ddns, subnet
  edgerelay subnet apply|remove|show [-c FILE]
                                  reconcile, undo or list the subnet-router setup
                                  (remove also undoes the peer relay)
  edgerelay peer-relay [-c FILE] [--format tailscale|headscale]
                                  print the policy-file grant that lets devices use the peer relay
  edgerelay web passwd [-c FILE]  set the web page's password (read from stdin)
  edgerelay version               print the version

FILE is a YAML file or an OpenWrt UCI file. Without -c, run looks for
/etc/config/edgerelay, then /etc/edgerelay/config.yaml, else uses a built-in default
(relay + STUN on loopback with a self-signed certificate).
`

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("edgerelay "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (YAML or UCI)")
	format := fs.String("format", "tailscale", "derpmap output: "+strings.Join(relay.DERPMapFormats, ", ")+"; peer-relay: "+strings.Join(peerrelay.GrantFormats, ", "))
	asJSON := fs.Bool("json", false, "status: print the daemon's JSON")
	var (
		err        error
		subnetArgs []string
	)
	if cmd == "web" {
		if len(args) == 0 || args[0] != "passwd" {
			fmt.Fprintf(stderr, "edgerelay web: want `edgerelay web passwd [-c FILE]`\n")
			return 2
		}
		args = args[1:]
	}
	switch cmd {
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "edgerelay %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run", "check", "derpmap", "status", "peer-relay", "web":
		if err := fs.Parse(args); err != nil {
			return 2
		}
	case "subnet":
		// The action may come before or after the flags: `subnet apply -c F` or `subnet -c F apply`.
		var action []string
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			action, args = args[:1], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return 2
		}
		subnetArgs = append(action, fs.Args()...)
	default:
		fmt.Fprintf(stderr, "edgerelay: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil && cmd == "subnet" && slices.Equal(subnetArgs, []string{"remove"}) {
		// Undoing must not depend on a config that went bad since (package removal runs
		// this): the state dir records what to undo. Keep what decoded, else the defaults.
		fmt.Fprintf(stderr, "edgerelay subnet remove: ignoring config problems to undo what was set up: %v\n", err)
		if cfg == nil {
			cfg = config.Default()
		}
		err = nil
	}
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n", sourceName(*cfgPath), len(probs))
			for _, p := range probs {
				fmt.Fprintf(stderr, "  %s\n", p)
			}
		} else {
			fmt.Fprintf(stderr, "edgerelay: %v\n", err)
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "check" {
		for _, w := range cfg.PermissionWarnings() {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	switch cmd {
	case "check":
		fmt.Fprintf(stdout, "%s: ok\n", sourceName(cfg.Source))
		if config.On(cfg.Relay.Enabled, true) {
			vc := cfg.Relay.VerifyClients
			for _, a := range verify.Advice(ctx, cfg.Relay.Listen, vc.Open, vc.Configured(), cfg.Line) {
				fmt.Fprintln(stdout, a)
			}
		}
	case "derpmap":
		err = printDERPMap(ctx, stdout, cfg, *format)
	case "run":
		err = run(ctx, cfg, stdout, stderr)
	case "subnet":
		err = cmdSubnet(ctx, cfg, subnetArgs, stdout)
	case "status":
		err = printStatus(ctx, stdout, cfg, *asJSON)
	case "peer-relay": // the policy-file grant for the peer relay
		if cfg.PeerRelay == nil || !config.On(cfg.PeerRelay.Enabled, true) {
			fmt.Fprintf(stdout, "// note: the peer relay is off in %s (add a peer_relay section)\n", sourceName(cfg.Source))
		}
		err = peerRelay(cfg, newLogger(cfg.LogLevel, os.Stderr)).WriteGrant(ctx, stdout, *format)
	case "web":
		err = webPasswd(os.Stdin, stderr, cfg.StateDir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgerelay %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func sourceName(path string) string {
	if path == "" {
		return "built-in default config"
	}
	return path
}

// loadConfig reads -c, or the default locations, or the embedded default.
func loadConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	for _, p := range config.DefaultPaths {
		if _, err := os.Stat(p); err == nil {
			return config.Load(p)
		}
	}
	return config.Default(), nil
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// webPasswd sets the web page's password from the first line of in.
func webPasswd(in io.Reader, prompt io.Writer, stateDir string) error {
	fmt.Fprint(prompt, "New web page password (one line; it is echoed): ")
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return fmt.Errorf("reading the password: no line (%v)", sc.Err())
	}
	if err := privateDir(stateDir, newLogger("warn", prompt)); err != nil {
		return err
	}
	if err := web.SetPassword(stateDir, sc.Text()); err != nil {
		return err
	}
	fmt.Fprintf(prompt, "saved in %s (the running daemon uses it from the next login)\n", web.PasswordFile(stateDir))
	return nil
}

// daemonGCPercent trades a little GC CPU for memory: the relay path allocates nothing per
// packet, so collections come from handshake bursts, and at Go's default of 100 a burst of
// 1,000 clients lets the heap reach twice its live size before the next one (about 4 MB more
// RSS). GOGC in the environment still wins.
const daemonGCPercent = 50

func run(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
	tail := web.NewLogTail(stderr, 200) // the log, and its last lines for the web page
	log := newLogger(cfg.LogLevel, tail)
	log.Info("edgerelay starting", "version", version, "config", sourceName(cfg.Source), "state_dir", cfg.StateDir)
	for _, w := range cfg.PermissionWarnings() {
		log.Warn("loose permissions", "problem", w)
	}
	if err := privateDir(cfg.StateDir, log); err != nil {
		return err
	}
	go returnFreedMemory(ctx, memoryCheckEvery)
	a := agent.New(cfg, log)
	a.Version = version
	a.Logs = tail
	if cfg.Source == "" {
		// The embedded default: print what to paste so a client can use this relay at once.
		go func() {
			select {
			case <-a.MapReady():
				if m, ok := a.HandOut(); ok {
					fmt.Fprintln(stdout, "// DERP map for this relay (paste into your tailnet policy file's derpMap):")
					relay.WriteDERPMap(stdout, "tailscale", m)
				}
			case <-ctx.Done():
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	err := a.Run(ctx, reload)
	log.Info("edgerelay stopped")
	return err
}

// printDERPMap prints this node's region: the running daemon's (its addresses follow the
// line; what is printed is recorded as pasted), else one from the config, the interfaces
// and DNS.
func printDERPMap(ctx context.Context, w io.Writer, cfg *config.Config, format string) error {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	m, err := agent.HandOutMap(qctx, cfg.StateDir)
	cancel()
	if err != nil {
		if m, err = agent.OfflineMap(ctx, cfg); err != nil {
			return err
		}
	}
	return relay.WriteDERPMap(w, format, m)
}
