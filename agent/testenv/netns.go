package testenv

import (
	"runtime"

	"github.com/vishvananda/netns"
)

// RunInNetNS runs f on an OS thread switched into the named network namespace (made by
// NewNetNS), for opening sockets there: a socket stays in the namespace it was made in. The
// thread stays locked and dies with its goroutine, so nothing else ever runs in ns by
// accident.
func RunInNetNS(ns string, f func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}
