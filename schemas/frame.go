// Package schemas owns every structured record that crosses a process boundary:
// the protobuf messages that travel over NATS or sit in KV, and the binary frame
// layout spoken with Python workers (FRAMES.md). It holds data shapes and their
// codecs only; it must not import NATS, start processes or log.
package schemas

import (
	"encoding/binary"
	"fmt"
	"io"
)

// FrameKind names what a worker frame carries; FRAMES.md lists them.
type FrameKind uint8

// Frame kinds of protocol version 1.
const (
	KindHello      FrameKind = 1
	KindRequest    FrameKind = 2
	KindResult     FrameKind = 3
	KindError      FrameKind = 4
	KindPing       FrameKind = 5
	KindPong       FrameKind = 6
	KindChunk      FrameKind = 7
	KindEnd        FrameKind = 8
	KindCancel     FrameKind = 9
	KindShutdown   FrameKind = 10
	KindAck        FrameKind = 11
	KindSessionEnd FrameKind = 12
)

// ProtocolVersion is the frame protocol both sides must agree on in HELLO.
const ProtocolVersion = 1

// FlagRaw marks a body of raw bytes (application/octet-stream) rather than JSON.
const FlagRaw uint8 = 1

// MaxFrame is the largest value of the length field a reader accepts.
const MaxFrame = 64 << 20

// frameHeader is the fixed part: length, kind, flags, reserved, id, meta length.
const frameHeader = 16

// Frame is one message on a worker pipe. Meta is a JSON object (or empty); Body is
// passed through untouched.
type Frame struct {
	Kind  FrameKind
	Flags uint8
	ID    uint32
	Meta  []byte
	Body  []byte
}

// Raw reports whether the body is raw bytes.
func (f *Frame) Raw() bool { return f.Flags&FlagRaw != 0 }

// AppendFrame appends the encoding of f to dst and returns the extended slice.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	n := 12 + len(f.Meta) + len(f.Body)
	if n > MaxFrame {
		return dst, fmt.Errorf("encode frame kind %d: %d bytes: %w", f.Kind, n, ErrFrameTooLarge)
	}
	var h [frameHeader]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(n))
	h[4] = byte(f.Kind)
	h[5] = f.Flags
	binary.BigEndian.PutUint32(h[8:12], f.ID)
	binary.BigEndian.PutUint32(h[12:16], uint32(len(f.Meta)))
	dst = append(dst, h[:]...)
	dst = append(dst, f.Meta...)
	return append(dst, f.Body...), nil
}

// ReadFrame reads one whole frame from r. Meta and Body alias one fresh buffer.
func ReadFrame(r io.Reader) (*Frame, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	metaLen := binary.BigEndian.Uint32(h[12:16])
	if n > MaxFrame {
		return nil, fmt.Errorf("read frame: length %d: %w", n, ErrFrameTooLarge)
	}
	if n < 12 || metaLen > n-12 {
		return nil, fmt.Errorf("read frame: length %d meta %d: %w", n, metaLen, ErrBadFrame)
	}
	kind := FrameKind(h[4])
	if kind < KindHello || kind > KindSessionEnd {
		return nil, fmt.Errorf("read frame: kind %d: %w", kind, ErrBadFrame)
	}
	buf := make([]byte, n-12)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read frame body: %w", unexpectedEOF(err))
	}
	return &Frame{
		Kind: kind, Flags: h[5], ID: binary.BigEndian.Uint32(h[8:12]),
		Meta: buf[:metaLen], Body: buf[metaLen:],
	}, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
