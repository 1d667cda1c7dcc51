package agent

import (
	"bytes"
	"context"
	"errors"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/web"
)

// webPart runs the web page over the agent's own state: status snapshots, the relay's
// counters, the log tail, the DERP map, and the settings of the file the config came from.
func (a *Agent) webPart(wc web.Config, stateDir, source string) Part {
	return Part{
		Name:    "web",
		Section: []any{wc, stateDir, source},
		Run: func(ctx context.Context) error {
			o := web.Options{Config: wc, StateDir: stateDir, Logger: a.log, Logs: a.Logs,
				Status:   func(ctx context.Context) any { return a.Status(ctx) },
				Counters: a.counters, Snippets: a.snippets}
			if source != "" {
				o.Settings = &fileSettings{a: a, path: source}
			}
			s, err := web.New(o)
			if err != nil {
				return err
			}
			return s.Run(ctx)
		},
	}
}

// counters are the running relay's totals for the page's traffic chart.
func (a *Agent) counters() web.Counters {
	a.mu.Lock()
	r := a.relay
	a.mu.Unlock()
	if r == nil {
		return web.Counters{}
	}
	st := r.Status()
	return web.Counters{BytesIn: st.BytesIn, BytesOut: st.BytesOut, Clients: st.Clients}
}

// snippets is the relay's map in the formats to paste; copied records it as handed out,
// as `edgerelay derpmap` does.
func (a *Agent) snippets(copied bool) map[string]string {
	get := a.DERPMap
	if copied {
		get = a.HandOut
	}
	m, ok := get()
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, f := range []string{"tailscale", "headscale"} {
		var b bytes.Buffer
		if relay.WriteDERPMap(&b, f, m) == nil {
			out[f] = b.String()
		}
	}
	return out
}

// fileSettings edits the config file the daemon runs from and reloads it.
type fileSettings struct {
	a    *Agent
	path string
}

// Current is the settings form: the file, its format and each setting with its value.
func (s *fileSettings) Current() (any, error) {
	cfg, err := config.Load(s.path)
	if cfg == nil {
		return nil, err
	}
	v := struct {
		File   string           `json:"file"`
		Format string           `json:"format"`
		Fields []config.Setting `json:"fields"`
		Values []string         `json:"values"`
	}{File: s.path, Format: "yaml", Fields: config.Settings}
	if cfg.UCI {
		v.Format = "uci"
	}
	for _, st := range config.Settings {
		v.Values = append(v.Values, cfg.Value(st))
	}
	return v, nil
}

func (s *fileSettings) Apply(changes map[string]string) ([]string, error) {
	err := config.Edit(s.path, changes)
	var probs config.Problems
	if errors.As(err, &probs) {
		out := make([]string, len(probs))
		for i, p := range probs {
			out[i] = p.String()
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	s.a.RequestReload()
	return nil, nil
}
