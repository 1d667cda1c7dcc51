package netfilter

import "github.com/edgerelay/edgerelay/agent/localapi"

// newLocalAPI is the local tailscaled at subnet.tailscaled_socket.
func newLocalAPI(socket string) *localapi.Client {
	return localapi.New(socket, "subnet.tailscaled_socket")
}
