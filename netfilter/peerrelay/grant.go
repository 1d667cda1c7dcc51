package peerrelay

import (
	"context"
	"fmt"
	"io"
	"strconv"
)

// GrantFormats are the forms WriteGrant prints.
var GrantFormats = []string{"tailscale", "headscale"}

// Grant is the policy-file grant that lets the tailnet's devices use this box as a peer
// relay: the tailscale.com/cap/relay app capability from the devices (src) to the relay
// (dst). dst is this node's Tailscale address when tailscaled answers, else a tag to give it.
func (r *Relay) Grant(ctx context.Context) (dst, why string) {
	if s, err := r.api.Status(ctx); err == nil && s.Self != nil && len(s.Self.TailscaleIPs) > 0 {
		return s.Self.TailscaleIPs[0].String(), "this box's Tailscale address (or a tag you give it)"
	}
	return "tag:peer-relay", "tailscaled did not answer: give this box tag:peer-relay (or put its Tailscale address here)"
}

// WriteGrant writes the grant to paste, in format (GrantFormats), for a relay at dst.
func WriteGrant(w io.Writer, format, dst, why string, port int) error {
	grant := `  "grants": [
    {
      // Devices that may relay through this box: add tags, or narrow to a group.
      "src": ["autogroup:member"],
      // The peer relay: ` + why + `.
      "dst": [` + strconv.Quote(dst) + `],
      "app": {"tailscale.com/cap/relay": []},
    },
  ],
`
	var err error
	switch format {
	case "tailscale":
		_, err = fmt.Fprintf(w, "// Peer relay on UDP %d: add to your tailnet policy file (Access controls), merging with any grants there.\n%s", port, grant)
	case "headscale":
		_, err = fmt.Fprintf(w, "// Peer relay on UDP %d: add to headscale's policy file (policy.path; HuJSON), merging with any grants there.\n"+
			"// headscale serves grants with app capabilities only in versions that carry juanfont/headscale#2841's fix\n"+
			"// (PR 3192: capability grants' destinations in the peer map); older ones accept the grant but no relay is used.\n%s", port, grant)
	default:
		err = fmt.Errorf("unknown grant format %q (want tailscale or headscale)", format)
	}
	return err
}
