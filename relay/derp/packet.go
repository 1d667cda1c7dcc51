package derp

import (
	"encoding/binary"
	"sync"
)

// packet is one relayed packet waiting in a receiver's queue. Packets (header and bytes
// together) come from a pool and go back after they are written or dropped, so relaying
// allocates nothing per packet; queues hold pointers, so an idle client's two queues cost
// 8 bytes a slot.
type packet = *pbuf

type pbuf struct {
	src   Key
	dst   Key // set only for packets waiting for a mesh link
	disco bool
	buf   []byte // headroom, then the packet's bytes
}

// headroom is the room before a packet's bytes for the RecvPacket frame's header and source
// key: a lone packet goes out as one Write of its own buffer (recvFrame), not copied through
// a buffered writer.
const headroom = frameHeaderLen + keyLen

// pooledSize covers every WireGuard packet on a 1500-byte path; larger ones (up to 64 KiB,
// rare) get their own allocation.
const pooledSize = 2048

var packetPool = sync.Pool{New: func() any { return &pbuf{buf: make([]byte, 0, headroom+pooledSize)} }}

func newPacket(n int) packet {
	if n <= pooledSize {
		p := packetPool.Get().(*pbuf)
		p.buf, p.disco = p.buf[:headroom+n], false
		return p
	}
	return &pbuf{buf: make([]byte, headroom+n)}
}

func (p *pbuf) data() []byte { return p.buf[headroom:] }
func (p *pbuf) len() int     { return len(p.buf) - headroom }

// cost is what the packet holds while queued, as queue budgets count it: a pooled buffer
// whatever the packet's length, else the packet.
func (p *pbuf) cost() int64 { return int64(cap(p.buf) - headroom) }

// recvFrame is the RecvPacket frame of p, built in its headroom.
func (p *pbuf) recvFrame() []byte {
	f := p.buf
	f[0] = frameRecvPacket
	binary.BigEndian.PutUint32(f[1:frameHeaderLen], uint32(len(f)-frameHeaderLen))
	copy(f[frameHeaderLen:headroom], p.src[:])
	return f
}

func (p *pbuf) release() {
	if cap(p.buf) == headroom+pooledSize {
		packetPool.Put(p)
	}
}
