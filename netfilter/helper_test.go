package netfilter

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/edgerelay/edgerelay/agent/testenv"
)

// The code under test must run inside the router namespace as a whole process (sysctls under
// /proc/sys/net follow the opener's netns, netlink and iptables/nft children must too), so
// the tests re-execute this test binary under `ip netns exec` with helperEnv naming the mode.
const helperEnv = "EDGERELAY_NF_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	code := m.Run()
	testenv.CleanupTools()
	os.Exit(code)
}

// helperMain runs one Reconciler method with the config file in EDGERELAY_NF_CONFIG.
func helperMain(mode string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The test's YAML file, read with yaml.v3 (agent/config imports this package).
	var cfg struct {
		StateDir string  `yaml:"state_dir"`
		Subnet   *Config `yaml:"subnet"`
	}
	b, err := os.ReadFile(os.Getenv("EDGERELAY_NF_CONFIG"))
	if err == nil {
		err = yaml.Unmarshal(b, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: config:", err)
		return 2
	}
	if cfg.Subnet == nil {
		fmt.Fprintln(os.Stderr, "helper: config has no subnet section")
		return 2
	}
	var opts []Option
	if dir := os.Getenv("EDGERELAY_NF_FW4_DIR"); dir != "" {
		opts = append(opts, WithFW4(dir, strings.Fields(os.Getenv("EDGERELAY_NF_FW4_RELOAD"))...))
	}
	r, err := New(*cfg.Subnet, cfg.StateDir, log, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: new:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch mode {
	case "apply":
		err = r.Apply(ctx)
	case "remove":
		err = r.Remove(ctx)
	case "show":
		var rep Report
		rep, err = r.Show(ctx)
		fmt.Print(rep.String())
	case "run":
		err = r.Run(ctx)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", mode+":", err)
		return 1
	}
	return 0
}
