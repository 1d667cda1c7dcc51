package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/edgerelay/edgerelay/acme"
	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/ddns"
	"github.com/edgerelay/edgerelay/notify"
)

// The notify part and the events the agent turns into notifications: the parts report
// through their own subscriber options and never import notify.

// certFailingWindow: a failed order is worth a notification once the certificate it
// should replace expires within this (or when there is none).
const certFailingWindow = 7 * 24 * time.Hour

func (a *Agent) notifyPart(nc config.Notify) Part {
	return Part{
		Name:    "notify",
		Section: nc,
		Run: func(ctx context.Context) error {
			n, err := notify.New(nc.Config, a.log)
			if err != nil {
				return err
			}
			// One notify part runs at a time: the supervisor stops the old before the new.
			setState(a, &a.notifier, n)
			defer setState(a, &a.notifier, nil)
			return n.Run(ctx)
		},
	}
}

// notify hands ev to the running notifier; without one (no notify section) it is dropped.
func (a *Agent) notify(ev *notify.Event) {
	a.mu.Lock()
	n := a.notifier
	a.mu.Unlock()
	if n != nil {
		n.Notify(ev) // only queues: never waits on a webhook
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (a *Agent) notifyWrite(w ddns.RecordWrite) {
	ev := &notify.Event{Event: notify.RecordUpdated, Time: w.At, Record: w.Record, Type: w.Type, New: addrString(w.New)}
	if w.Old != "none" {
		ev.Old = w.Old
	}
	if w.Err != nil {
		ev.Event, ev.Error = notify.RecordFailing, w.Err.Error()
	}
	a.notify(ev)
}

func (a *Agent) notifyOrderFailure(f acme.OrderFailure) {
	if f.NotAfter.IsZero() || time.Until(f.NotAfter) < certFailingWindow {
		a.notify(&notify.Event{Event: notify.CertFailing, Names: f.Domains, Expires: f.NotAfter, Error: f.Err.Error()})
	}
}

func (a *Agent) notifyPartFailing(name string, err error, _ int) {
	a.notify(&notify.Event{Event: notify.PartFailing, Part: name, Error: err.Error()})
}
