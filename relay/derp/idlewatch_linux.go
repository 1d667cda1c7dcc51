package derp

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
)

// An idle client costs no goroutine. When the sweep finds a detached reader idle between
// frames (idleread.go), the reader arms a one-shot epoll registration of its socket in the
// server's idle watch and its goroutine ends. One goroutine waits on that epoll set for all
// parked clients and starts a reader for a client whose socket became readable (data, the
// peer's end, or an error). On 1,000 idle clients that is 1,000 goroutines fewer than a
// waiter goroutine each, and their stacks of 2 KiB or more.
//
// The sockets stay in the runtime's own poller as well; this set only watches them. Closing
// a socket removes it from every epoll set without a word, so whoever closes a client's
// connection from outside its reader (sender, direct writer, eviction, Close) calls
// closeConn, which resumes a parked reader to see the close. Registrations are changed only
// inside RawConn.Control, while the runtime guarantees the descriptor is still this socket.

// idleWatch is the server's epoll set of parked readers, started with the first one.
type idleWatch struct {
	mu      sync.Mutex
	started bool
	closed  bool
	epfd    int
	stop    [2]int              // a pipe whose read end, in the set as id 0, ends the loop
	parked  map[uint64]*sclient // by connNum (never 0)
	gauge   *atomic.Int64       // Stats.IdleParked
}

// park registers c's socket for one readable event. It reports false when c must wait in
// a goroutine of its own instead (no epoll here, the watch closed, or the socket closed).
// After true, c belongs to the watch (or already to the reader it started): the caller
// must not touch it. The lock is held from arming to the entry in parked, so an event or a
// close that comes in between finds the entry.
func (w *idleWatch) park(c *sclient) bool {
	r := c.idle
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.startLocked() {
		return false
	}
	var err error
	cerr := r.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
		ev.Fd, ev.Pad = int32(uint32(c.connNum)), int32(uint32(c.connNum>>32))
		// Re-arm; a socket parked for the first time (in this set) is added.
		if err = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev); err == syscall.ENOENT {
			err = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if cerr != nil || err != nil {
		return false
	}
	w.parked[c.connNum] = c
	r.parked.Store(true)
	w.gauge.Add(1)
	return true
}

// take removes a parked client; it returns it if the caller now owns it.
func (w *idleWatch) take(id uint64) *sclient {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.takeLocked(id)
}

func (w *idleWatch) takeLocked(id uint64) *sclient {
	c := w.parked[id]
	if c == nil {
		return nil
	}
	delete(w.parked, id)
	c.idle.parked.Store(false)
	w.gauge.Add(-1)
	return c
}

// resume starts the reader of c if it is parked (a close from outside its reader).
func (w *idleWatch) resume(c *sclient) {
	if c.idle != nil && w.take(c.connNum) != nil {
		go c.serveDetached()
	}
}

// startLocked creates the epoll set and its goroutine when none runs. A failure (out of
// descriptors, say) leaves readers to their own goroutines until a later park succeeds.
func (w *idleWatch) startLocked() bool {
	if w.started || w.closed {
		return w.started
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.Pipe2(w.stop[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.stop[0], &ev); err != nil {
		closeAll(epfd, w.stop[0], w.stop[1])
		return false
	}
	w.epfd, w.started = epfd, true
	w.parked = map[uint64]*sclient{}
	go w.loop()
	return true
}

// loop waits for parked sockets to become readable and resumes their readers. It blocks
// one thread in epoll_wait, outside the runtime's poller.
func (w *idleWatch) loop() {
	defer w.stopped()
	evs := make([]syscall.EpollEvent, 64)
	for {
		n, err := syscall.EpollWait(w.epfd, evs, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range evs[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return
			}
			if c := w.take(id); c != nil {
				go c.serveDetached()
			}
		}
	}
}

// stopped releases the set when the loop ends, and resumes the readers still parked (none
// after Close, which closed their connections first) so that none is stranded.
func (w *idleWatch) stopped() {
	w.mu.Lock()
	closeAll(w.epfd, w.stop[0], w.stop[1])
	w.started = false
	var left []*sclient
	for id := range w.parked {
		left = append(left, w.takeLocked(id))
	}
	w.mu.Unlock()
	for _, c := range left {
		go c.serveDetached()
	}
}

// close ends the loop once the server closed every connection (each closeConn resumed its
// parked reader); later park calls report false.
func (w *idleWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && w.started {
		syscall.Write(w.stop[1], []byte{0})
	}
	w.closed = true
}

func closeAll(fds ...int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}
