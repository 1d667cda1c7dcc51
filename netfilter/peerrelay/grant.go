package peerrelay

import (
	"context"
	"fmt"
	"io"
)

// GrantFormats are the forms WriteGrant prints.
var GrantFormats = []string{"tailscale", "headscale"}

// WriteGrant writes, in format (GrantFormats), the policy-file grant that lets the
// tailnet's devices use this box as a peer relay: the tailscale.com/cap/relay app
// capability from the devices (src) to the relay (dst), this node's Tailscale address when
// tailscaled answers, else a tag to give it.
func (r *Relay) WriteGrant(ctx context.Context, w io.Writer, format string) error {
	var where string
	switch format {
	case "tailscale":
		where = "your tailnet policy file (Access controls)"
	case "headscale":
		where = "headscale's policy file (policy.path; HuJSON)"
	default:
		return fmt.Errorf("unknown grant format %q (want tailscale or headscale)", format)
	}
	dst, why := "tag:peer-relay", "tailscaled did not answer: give this box tag:peer-relay (or put its Tailscale address here)"
	if s, err := r.api.Status(ctx); err == nil && s.Self != nil && len(s.Self.TailscaleIPs) > 0 {
		dst, why = s.Self.TailscaleIPs[0].String(), "this box's Tailscale address (or a tag you give it)"
	}
	note := ""
	if format == "headscale" {
		note = "// headscale serves grants with app capabilities only in versions that carry juanfont/headscale#2841's fix\n" +
			"// (PR 3192: capability grants' destinations in the peer map); older ones accept the grant but no relay is used.\n"
	}
	_, err := fmt.Fprintf(w, `// Peer relay on UDP %d: add to %s, merging with any grants there.
%s  "grants": [
    {
      // Devices that may relay through this box: add tags, or narrow to a group.
      "src": ["autogroup:member"],
      // The peer relay: %s.
      "dst": [%q],
      "app": {"tailscale.com/cap/relay": []},
    },
  ],
`, r.cfg.Port, where, note, why, dst)
	return err
}
