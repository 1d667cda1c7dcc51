package ddns

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// A STUN Binding request (RFC 8489) learns the address this line's NAT maps the box to,
// which is the public address when it lives on a modem in router mode rather than on the
// box. Only what a Binding needs is here: a 20-byte request without attributes, and the
// (XOR-)MAPPED-ADDRESS of the success response.
const (
	stunHeaderLen    = 20
	stunMagicCookie  = 0x2112A442
	stunBindingReq   = 0x0001
	stunBindingOK    = 0x0101
	stunBindingError = 0x0111

	stunAttrMappedAddress    = 0x0001
	stunAttrErrorCode        = 0x0009
	stunAttrXORMappedAddress = 0x0020
)

type stunTxID [12]byte

func stunRequest(tx stunTxID) []byte {
	b := make([]byte, stunHeaderLen)
	binary.BigEndian.PutUint16(b[0:2], stunBindingReq)
	binary.BigEndian.PutUint32(b[4:8], stunMagicCookie)
	copy(b[8:], tx[:])
	return b
}

var errSTUNOtherTx = errors.New("not an answer to this request")

// parseSTUNResponse returns the mapped address of a Binding success response to tx. An
// XOR-MAPPED-ADDRESS is preferred over the plain MAPPED-ADDRESS of old (RFC 3489) servers.
func parseSTUNResponse(b []byte, tx stunTxID) (netip.Addr, error) {
	if len(b) < stunHeaderLen || b[0]&0xc0 != 0 || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return netip.Addr{}, errors.New("not a STUN message")
	}
	if stunTxID(b[8:20]) != tx {
		return netip.Addr{}, errSTUNOtherTx
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 || stunHeaderLen+n > len(b) {
		return netip.Addr{}, errors.New("STUN message length does not match the datagram")
	}
	typ := binary.BigEndian.Uint16(b[0:2])
	var xor, plain netip.Addr
	var errCode string
	for off := stunHeaderLen; off+4 <= stunHeaderLen+n; {
		at := binary.BigEndian.Uint16(b[off : off+2])
		l := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		v := b[off+4:]
		if l > len(v) || off+4+l > stunHeaderLen+n {
			return netip.Addr{}, errors.New("STUN attribute runs past the message")
		}
		v = v[:l]
		switch at {
		case stunAttrXORMappedAddress:
			xor = stunAddress(v, b[4:20])
		case stunAttrMappedAddress:
			plain = stunAddress(v, nil)
		case stunAttrErrorCode:
			if l >= 4 {
				errCode = fmt.Sprintf("%d %q", int(v[2]&7)*100+int(v[3]), v[4:])
			}
		}
		off += 4 + (l+3)&^3
	}
	switch {
	case typ == stunBindingError:
		return netip.Addr{}, fmt.Errorf("the server refused the request: error %s", errCode)
	case typ != stunBindingOK:
		return netip.Addr{}, fmt.Errorf("unexpected STUN message type %#04x", typ)
	case xor.IsValid():
		return xor, nil
	case plain.IsValid():
		return plain, nil
	}
	return netip.Addr{}, errors.New("the answer carries no mapped address")
}

// stunAddress decodes a (XOR-)MAPPED-ADDRESS value: 0, family, port, address. key (the
// cookie and transaction ID, header bytes 4..20) undoes the XOR; nil means plain.
func stunAddress(v, key []byte) netip.Addr {
	if len(v) < 4 {
		return netip.Addr{}
	}
	var n int
	switch v[1] {
	case 0x01:
		n = 4
	case 0x02:
		n = 16
	default:
		return netip.Addr{}
	}
	if len(v) < 4+n {
		return netip.Addr{}
	}
	ip := make([]byte, n)
	for i := range ip {
		ip[i] = v[4+i]
		if key != nil {
			ip[i] ^= key[i]
		}
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func stunNetwork(typ string) string {
	if typ == "A" {
		return "udp4"
	}
	return "udp6"
}

// askSTUN sends Binding requests to server over network (udp4 or udp6), resending after
// 0.5, 1 and 2 s as RFC 8489 suggests, until an answer or ctx ends.
func askSTUN(ctx context.Context, network, server string) (netip.Addr, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, server)
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var tx stunTxID
	rand.Read(tx[:])
	req := stunRequest(tx)
	buf := make([]byte, 1500)
	rto := 500 * time.Millisecond
	for {
		if _, err := conn.Write(req); err != nil {
			return netip.Addr{}, err
		}
		next := time.Now().Add(rto)
		rto = min(rto*2, 4*time.Second)
		for {
			if ctx.Err() != nil {
				return netip.Addr{}, fmt.Errorf("no answer: %w", ctx.Err())
			}
			conn.SetReadDeadline(next)
			n, err := conn.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break // resend
			}
			if err != nil {
				return netip.Addr{}, err
			}
			a, err := parseSTUNResponse(buf[:n], tx)
			if errors.Is(err, errSTUNOtherTx) {
				continue
			}
			return a, err
		}
	}
}
