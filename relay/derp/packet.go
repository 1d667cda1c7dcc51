package derp

import "sync"

// packet is one relayed packet waiting in a receiver's queue. Packets (header and bytes
// together) come from a pool and go back after they are written or dropped, so relaying
// allocates nothing per packet; queues hold pointers, so an idle client's two queues cost
// 8 bytes a slot.
type packet = *pbuf

type pbuf struct {
	src   Key
	dst   Key // set only for packets waiting for a mesh link
	disco bool
	b     []byte
}

// pooledSize covers every WireGuard packet on a 1500-byte path; larger ones (up to 64 KiB,
// rare) get their own allocation.
const pooledSize = 2048

var packetPool = sync.Pool{New: func() any { return &pbuf{b: make([]byte, 0, pooledSize)} }}

func newPacket(n int) packet {
	if n <= pooledSize {
		p := packetPool.Get().(*pbuf)
		p.b, p.disco = p.b[:n], false
		return p
	}
	return &pbuf{b: make([]byte, n)}
}

func (p *pbuf) data() []byte { return p.b }
func (p *pbuf) len() int     { return len(p.b) }

// cost is what the packet holds while queued, as queue budgets count it: a pooled buffer
// whatever the packet's length, else the packet.
func (p *pbuf) cost() int64 { return int64(cap(p.b)) }

func (p *pbuf) release() {
	if cap(p.b) == pooledSize {
		packetPool.Put(p)
	}
}
