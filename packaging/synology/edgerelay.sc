[edgerelay_derp]
title="edgerelay DERP relay"
desc="Tailscale DERP relay over HTTPS"
port_forward="yes"
dst.ports="12345/tcp"

[edgerelay_stun]
title="edgerelay STUN"
desc="STUN for Tailscale clients"
port_forward="yes"
dst.ports="3478/udp"

[edgerelay_web]
title="edgerelay web page"
desc="edgerelay's status and settings page (LAN side only)"
port_forward="no"
dst.ports="8021/tcp"
