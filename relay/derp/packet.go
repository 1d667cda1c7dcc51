package derp

import "sync"

// packet is one relayed packet waiting in a receiver's queue. Its bytes come from a pool
// and go back after they are written (or dropped), so relaying allocates nothing per packet.
type packet struct {
	src   Key
	buf   *[]byte
	disco bool
}

// pooledSize covers every WireGuard packet on a 1500-byte path; larger ones (up to 64 KiB,
// rare) get their own allocation.
const pooledSize = 2048

var bufPool = sync.Pool{New: func() any { b := make([]byte, pooledSize); return &b }}

func newPacket(n int) packet {
	if n <= pooledSize {
		b := bufPool.Get().(*[]byte)
		*b = (*b)[:n]
		return packet{buf: b}
	}
	b := make([]byte, n)
	return packet{buf: &b}
}

func (p packet) data() []byte { return *p.buf }
func (p packet) len() int     { return len(*p.buf) }

func (p packet) release() {
	if cap(*p.buf) == pooledSize {
		bufPool.Put(p.buf)
	}
}
