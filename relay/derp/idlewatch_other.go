//go:build !linux

package derp

import "sync/atomic"

// idleWatch needs epoll: elsewhere every idle reader waits in a goroutine of its own.
type idleWatch struct{ gauge *atomic.Int64 }

func (w *idleWatch) park(*sclient) bool { return false }
func (w *idleWatch) resume(*sclient)    {}
func (w *idleWatch) close()             {}
