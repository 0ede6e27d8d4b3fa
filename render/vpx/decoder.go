package vpx

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"runtime"
	"unsafe"
)

// Decoder decodes a VP8 stream, frame by frame. It is not safe for concurrent use.
type Decoder struct {
	c       *C.rm_dec
	cleanup runtime.Cleanup
	maxW    int
	maxH    int
}

// DecoderOption configures a Decoder.
type DecoderOption func(*Decoder) error

// WithMaxFrameSize makes the decoder reject keyframes wider than w or taller than h (default
// DefaultMaxDecodeDimension each, at most 16383, VP8's limit) before libvpx allocates memory
// for them: a peer's stream cannot make the decoder allocate more than a few frames of that size.
func WithMaxFrameSize(w, h int) DecoderOption {
	return func(d *Decoder) error {
		if w < 1 || h < 1 || w > 16383 || h > 16383 {
			return fmt.Errorf("%w: max frame size %dx%d", ErrInvalidConfig, w, h)
		}
		d.maxW, d.maxH = w, h
		return nil
	}
}

// NewDecoder returns a VP8 decoder.
func NewDecoder(opts ...DecoderOption) (*Decoder, error) {
	d := &Decoder{maxW: DefaultMaxDecodeDimension, maxH: DefaultMaxDecodeDimension}
	for _, o := range opts {
		if err := o(d); err != nil {
			return nil, err
		}
	}
	c := C.rm_dec_new()
	if c == nil {
		return nil, &CodecError{Op: "init decoder", Code: C.VPX_CODEC_MEM_ERROR, Msg: "out of memory"}
	}
	if code := C.rm_dec_init(c); code != C.VPX_CODEC_OK {
		err := &CodecError{Op: "init decoder", Code: int(code), Msg: C.GoString(C.vpx_codec_err_to_string(code))}
		C.rm_dec_free(c)
		return nil, err
	}
	d.c = c
	d.cleanup = runtime.AddCleanup(d, func(c *C.rm_dec) { C.rm_dec_free(c) }, c)
	return d, nil
}

// errEmpty is returned for an empty frame (libvpx would take it as a flush).
var errEmpty = errors.New("vpx: empty frame")

// Decode decodes one VP8 frame and returns its picture as a new 4:2:0 image of the frame's
// size, which may change at any keyframe. Input that is not VP8, cut short or corrupted gives an
// error (the stream then needs a keyframe); a valid frame that is not meant to be shown gives
// ErrNoFrame.
func (d *Decoder) Decode(frame []byte) (*image.YCbCr, error) {
	if d.c == nil {
		return nil, ErrClosed
	}
	if len(frame) == 0 {
		return nil, errEmpty
	}
	if w, h, ok := keyframeSize(frame); ok && (w > d.maxW || h > d.maxH) {
		return nil, fmt.Errorf("%w: keyframe of %dx%d, limit %dx%d", ErrFrameTooLarge, w, h, d.maxW, d.maxH)
	}
	code := C.rm_dec_decode(d.c, (*C.uint8_t)(unsafe.Pointer(&frame[0])), C.size_t(len(frame)))
	runtime.KeepAlive(frame)
	if code != C.VPX_CODEC_OK {
		ce := &CodecError{Op: "decode", Code: int(code), Msg: C.GoString(C.rm_dec_error(d.c))}
		if s := C.rm_dec_error_detail(d.c); s != nil {
			ce.Detail = C.GoString(s)
		}
		return nil, ce
	}
	img := d.c.img
	if img == nil {
		return nil, ErrNoFrame
	}
	w, h := int(img.d_w), int(img.d_h)
	if img.fmt != C.VPX_IMG_FMT_I420 || img.x_chroma_shift != 1 || img.y_chroma_shift != 1 ||
		w < 1 || h < 1 || w > 16383 || h > 16383 {
		return nil, &CodecError{Op: "decode", Code: C.VPX_CODEC_UNSUP_BITSTREAM,
			Msg: fmt.Sprintf("unexpected image: format %d, %dx%d", int(img.fmt), w, h)}
	}
	out := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	C.rm_dec_copy(d.c, (*C.uint8_t)(unsafe.Pointer(&out.Y[0])), C.int(out.YStride),
		(*C.uint8_t)(unsafe.Pointer(&out.Cb[0])), (*C.uint8_t)(unsafe.Pointer(&out.Cr[0])), C.int(out.CStride))
	return out, nil
}

// keyframeSize reads the size from a VP8 keyframe header (RFC 6386 section 9.1): a 3-byte frame
// tag whose lowest bit is 0 for a keyframe, the start code 9d 01 2a, then 14-bit width and
// height (little-endian, the top two bits are scaling).
func keyframeSize(b []byte) (w, h int, ok bool) {
	if len(b) < 10 || b[0]&1 != 0 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, false
	}
	return int(binary.LittleEndian.Uint16(b[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(b[8:]) & 0x3fff), true
}

// Close frees the decoder. Calling it again does nothing; Decode then returns ErrClosed.
func (d *Decoder) Close() error {
	if d.c == nil {
		return nil
	}
	d.cleanup.Stop()
	C.rm_dec_free(d.c)
	d.c = nil
	return nil
}
