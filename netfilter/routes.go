package netfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Routes are read through netlink's message layer (nl) rather than netlink.RouteList and
// RouteSubscribe: those decode every route attribute (encapsulations, multipath, metrics),
// and that decoder is about 90 KB of the mipsle binary. The reconciler needs only a route's
// destination, table, type, protocol and output interface.

// kernelRoute is what the reconciler reads of a kernel route.
type kernelRoute struct {
	Dst      netip.Prefix // invalid for a default route (no RTA_DST)
	Table    uint32       // RTA_TABLE when present (tables above 255), else the header's
	Type     uint8        // RTN_*
	Protocol uint8        // RTPROT_*
	OIF      int          // output interface index, 0 when none
}

// parseRoute decodes an RTM_NEWROUTE/RTM_DELROUTE message body. cloned reports a cached
// (RTM_F_CLONED) route, which route listings skip as netlink.RouteList does.
func parseRoute(b []byte) (rt kernelRoute, cloned bool, err error) {
	if len(b) < unix.SizeofRtMsg {
		return rt, false, fmt.Errorf("route message of %d bytes, want at least %d", len(b), unix.SizeofRtMsg)
	}
	msg := nl.DeserializeRtMsg(b)
	rt = kernelRoute{Table: uint32(msg.Table), Type: msg.Type, Protocol: msg.Protocol}
	attrs, err := nl.ParseRouteAttr(b[msg.Len():])
	if err != nil {
		return rt, false, fmt.Errorf("route attributes: %w", err)
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_DST:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				rt.Dst = netip.PrefixFrom(ip, int(msg.Dst_len))
			}
		case unix.RTA_TABLE:
			if len(a.Value) == 4 {
				rt.Table = nl.NativeEndian().Uint32(a.Value)
			}
		case unix.RTA_OIF:
			if len(a.Value) == 4 {
				rt.OIF = int(nl.NativeEndian().Uint32(a.Value))
			}
		}
	}
	return rt, msg.Flags&unix.RTM_F_CLONED != 0, nil
}

// listRoutes dumps the kernel's routes of family (unix.AF_INET or AF_INET6), cached ones
// left out. A dump interrupted by a concurrent change returns what it read with an error
// matching nl.ErrDumpInterrupted.
func listRoutes(family int) ([]kernelRoute, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
	req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(family)}})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE)
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, err
	}
	var out []kernelRoute
	for _, m := range msgs {
		rt, cloned, perr := parseRoute(m)
		if perr != nil {
			return nil, perr
		}
		if !cloned {
			out = append(out, rt)
		}
	}
	return out, err
}

// subscribeRoutes delivers the kernel's IPv4 and IPv6 route changes on the returned channel
// until done is closed or receiving fails; then the channel is closed. onErr hears why
// (and about messages it could not decode, which it skips).
func subscribeRoutes(done <-chan struct{}, onErr func(error)) (<-chan kernelRoute, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE)
	if err != nil {
		return nil, err
	}
	go func() {
		<-done
		s.Close()
	}()
	ch := make(chan kernelRoute, 64)
	go func() {
		defer close(ch)
		for {
			msgs, from, err := s.Receive()
			if err != nil {
				onErr(fmt.Errorf("receive route events: %w", err))
				return
			}
			if from.Pid != nl.PidKernel {
				continue
			}
			for _, m := range msgs {
				switch m.Header.Type {
				case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
				case unix.NLMSG_ERROR:
					if len(m.Data) >= 4 {
						if e := int32(nl.NativeEndian().Uint32(m.Data)); e != 0 {
							onErr(fmt.Errorf("route events: %w", syscall.Errno(-e)))
						}
					}
					continue
				default:
					continue
				}
				rt, _, err := parseRoute(m.Data)
				if err != nil {
					onErr(err)
					continue
				}
				select {
				case ch <- rt:
				case <-done:
					return
				}
			}
		}
	}()
	return ch, nil
}
