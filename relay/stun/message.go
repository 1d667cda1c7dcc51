package stun

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
)

// Wire constants from RFC 5389/8489.
const (
	headerLen   = 20
	magicCookie = 0x2112A442

	typeBindingRequest = 0x0001
	typeBindingSuccess = 0x0101

	attrXORMappedAddress = 0x0020
	attrFingerprint      = 0x8028

	fingerprintXOR = 0x5354554e

	familyIPv4 = 0x01
	familyIPv6 = 0x02

	// Response sizes: header + attribute header + 8 or 20 value bytes.
	responseLenIPv4 = headerLen + 4 + 8
	responseLenIPv6 = headerLen + 4 + 20
	maxResponseLen  = responseLenIPv6
)

// TxID is a STUN transaction ID.
type TxID [12]byte

// Parse errors. They are sentinel values so that rejecting junk does not
// allocate; the server counts all of them as not_stun.
var (
	errShort          = errors.New("stun: datagram shorter than the 20-byte header")
	errNotSTUN        = errors.New("stun: not a STUN message (top bits or magic cookie)")
	errNotBindingReq  = errors.New("stun: message type is not Binding Request")
	errLength         = errors.New("stun: header length does not match the datagram or is not a multiple of 4")
	errTruncatedAttr  = errors.New("stun: attribute runs past the end of the message")
	errFingerprintPos = errors.New("stun: FINGERPRINT is not the last attribute")
	errFingerprintLen = errors.New("stun: FINGERPRINT value is not 4 bytes")
	errFingerprint    = errors.New("stun: FINGERPRINT does not match the message")
)

// parseBindingRequest checks that b is exactly one well-formed STUN Binding
// Request and returns its transaction ID. Unknown attributes are ignored (a
// server has nothing to do with them for a Binding Request); a FINGERPRINT,
// if present, must be last and valid.
func parseBindingRequest(b []byte) (TxID, error) {
	var tx TxID
	if len(b) < headerLen {
		return tx, errShort
	}
	if b[0]&0xc0 != 0 || binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return tx, errNotSTUN
	}
	if binary.BigEndian.Uint16(b[0:2]) != typeBindingRequest {
		return tx, errNotBindingReq
	}
	msgLen := int(binary.BigEndian.Uint16(b[2:4]))
	if msgLen%4 != 0 || headerLen+msgLen != len(b) {
		return tx, errLength
	}
	for off := headerLen; off < len(b); {
		if len(b)-off < 4 {
			return tx, errTruncatedAttr
		}
		typ := binary.BigEndian.Uint16(b[off : off+2])
		vlen := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		padded := (vlen + 3) &^ 3
		if len(b)-off-4 < padded {
			return tx, errTruncatedAttr
		}
		if typ == attrFingerprint {
			if vlen != 4 {
				return tx, errFingerprintLen
			}
			if off+8 != len(b) {
				return tx, errFingerprintPos
			}
			// The CRC covers everything before this attribute, with the
			// header length already counting it (RFC 5389 §15.5).
			want := crc32.ChecksumIEEE(b[:off]) ^ fingerprintXOR
			if binary.BigEndian.Uint32(b[off+4:off+8]) != want {
				return tx, errFingerprint
			}
		}
		off += 4 + padded
	}
	copy(tx[:], b[8:20])
	return tx, nil
}

// appendResponse writes a Binding Success response for tx carrying addr as
// the single XOR-MAPPED-ADDRESS into dst, which must hold maxResponseLen
// bytes, and returns the number of bytes written. IPv4-mapped IPv6 addresses
// are answered as plain IPv4 (family 0x01).
func appendResponse(dst []byte, tx TxID, addr netip.AddrPort) int {
	ip := addr.Addr().Unmap()
	n, valLen, family := responseLenIPv6, 20, byte(familyIPv6)
	if ip.Is4() {
		n, valLen, family = responseLenIPv4, 8, familyIPv4
	}
	b := dst[:n]
	binary.BigEndian.PutUint16(b[0:2], typeBindingSuccess)
	binary.BigEndian.PutUint16(b[2:4], uint16(n-headerLen))
	binary.BigEndian.PutUint32(b[4:8], magicCookie)
	copy(b[8:20], tx[:])
	binary.BigEndian.PutUint16(b[20:22], attrXORMappedAddress)
	binary.BigEndian.PutUint16(b[22:24], uint16(valLen))
	b[24] = 0
	b[25] = family
	binary.BigEndian.PutUint16(b[26:28], addr.Port()^(magicCookie>>16))
	// The address is XORed with the cookie followed by the transaction ID,
	// which are exactly header bytes 4..20.
	if ip.Is4() {
		a := ip.As4()
		for i := range a {
			b[28+i] = a[i] ^ b[4+i]
		}
	} else {
		a := ip.As16()
		for i := range a {
			b[28+i] = a[i] ^ b[4+i]
		}
	}
	return n
}
