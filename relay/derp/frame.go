package derp

import (
	"bufio"
	"encoding/binary"
	"io"
)

// readFrameHeader reads a frame's type and payload length.
func readFrameHeader(br *bufio.Reader) (typ byte, n uint32, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, 0, err
	}
	return hdr[0], binary.BigEndian.Uint32(hdr[1:]), nil
}

// writeFrameHeader writes a frame's type and payload length.
func writeFrameHeader(bw *bufio.Writer, typ byte, n uint32) error {
	var hdr [frameHeaderLen]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], n)
	_, err := bw.Write(hdr[:])
	return err
}

// writeFrame writes a whole frame from parts, without flushing.
func writeFrame(bw *bufio.Writer, typ byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if err := writeFrameHeader(bw, typ, uint32(n)); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := bw.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// discard skips n payload bytes.
func discard(br *bufio.Reader, n uint32) error {
	_, err := br.Discard(int(n))
	return err
}
