package derp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// readFrameHeader reads a frame's type and payload length.
func readFrameHeader(br *bufio.Reader) (typ byte, n uint32, err error) {
	var hdr [frameHeaderLen]byte
	if err := readSmall(br, hdr[:]); err != nil {
		return 0, 0, err
	}
	return hdr[0], binary.BigEndian.Uint32(hdr[1:]), nil
}

// readSmall is io.ReadFull for a few bytes, copied out of br's buffer: p stays on the
// caller's stack (through io.ReadFull's interface it would escape, an allocation per frame).
func readSmall(br *bufio.Reader, p []byte) error {
	for read := 0; read < len(p); {
		b, err := br.Peek(min(len(p)-read, br.Size()))
		read += copy(p[read:], b)
		br.Discard(len(b))
		if err != nil && read < len(p) {
			if read > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// writeFrameHeader writes a frame's type and payload length.
func writeFrameHeader(bw *bufio.Writer, typ byte, n uint32) error {
	if bw.Available() < frameHeaderLen {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	// Built in bw's own buffer: a local array would escape through Write.
	_, err := bw.Write(binary.BigEndian.AppendUint32(append(bw.AvailableBuffer(), typ), n))
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
