package vpx

/*
#cgo pkg-config: vpx
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"image"
	"runtime"
	"unsafe"
)

// Encoder is a realtime VP8 encoder: constant bitrate, no look-ahead (every Encode returns the
// frame it was given), error resilient, keyframes on demand.
//
// An Encoder is not safe for concurrent use: one goroutine encodes, and SetBitrate, Resize,
// SetROI and Close are called between frames from that same goroutine (or with a lock).
type Encoder struct {
	cfg     EncoderConfig
	c       *C.rm_enc
	cleanup runtime.Cleanup
	pts     int64
	out     []byte // reused for each frame
	// forceKey makes the next frame a keyframe (after a resize).
	forceKey bool
	roi      roiState
	reinits  int // how many times Resize re-initialised libvpx (tests)
}

type roiState struct {
	on     bool
	rect   image.Rectangle
	deltaQ int
}

// NewEncoder returns an encoder for cfg (see EncoderConfig for the defaults).
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := C.rm_enc_new()
	if c == nil {
		return nil, &CodecError{Op: "init", Code: C.VPX_CODEC_MEM_ERROR, Msg: "out of memory"}
	}
	e := &Encoder{cfg: cfg, c: c}
	if err := e.init(cfg.Width, cfg.Height); err != nil {
		C.rm_enc_free(c)
		return nil, err
	}
	e.cleanup = runtime.AddCleanup(e, func(c *C.rm_enc) { C.rm_enc_free(c) }, c)
	return e, nil
}

// init (re)initialises libvpx for w x h with the rest of e.cfg.
func (e *Encoder) init(w, h int) error {
	p := C.rm_enc_params{
		width:        C.int(w),
		height:       C.int(h),
		fps:          C.int(e.cfg.FPS),
		bitrate_kbps: C.int(e.cfg.BitrateKbps),
		threads:      C.int(e.cfg.Threads),
		cpu_used:     C.int(e.cfg.CPUUsed),
		kf_interval:  C.int(e.cfg.KeyframeInterval),
		drop_thresh:  C.int(e.cfg.FrameDropThreshold),
	}
	if code := C.rm_enc_init(e.c, &p); code != C.VPX_CODEC_OK {
		err := e.codecErr("init", code)
		C.rm_enc_destroy(e.c)
		return err
	}
	return nil
}

func (e *Encoder) codecErr(op string, code C.vpx_codec_err_t) error {
	ce := &CodecError{Op: op, Code: int(code), Msg: C.GoString(C.vpx_codec_err_to_string(code))}
	if e.c.inited != 0 {
		ce.Msg = C.GoString(C.rm_enc_error(e.c))
		if d := C.rm_enc_error_detail(e.c); d != nil {
			ce.Detail = C.GoString(d)
		}
	}
	return ce
}

// Config is the encoder's configuration, with defaults filled in and the current size and
// bitrate.
func (e *Encoder) Config() EncoderConfig { return e.cfg }

// Encode encodes img, a 4:2:0 image of the encoder's current size, as the next frame (its pts
// is one more than the previous frame's). forceKeyframe makes it a keyframe, as a receiver's
// picture loss indication asks; the first frame and the first after Resize always are. A
// keyframe asked for is never lost: if libvpx drops the frame, the next one is forced.
//
// It returns the frame's VP8 bitstream, ready for an RTP VP8 payloader, and whether it is a
// keyframe. The slice is reused: it is valid until the next call to a method of the encoder;
// copy it to keep it. frame is nil (with a nil error) when libvpx's rate control dropped the
// frame, which happens only with a FrameDropThreshold: send nothing for it.
func (e *Encoder) Encode(img *image.YCbCr, forceKeyframe bool) (frame []byte, keyframe bool, err error) {
	if e.c == nil {
		return nil, false, ErrClosed
	}
	w, h := int(e.c.img.d_w), int(e.c.img.d_h)
	yOff, cOff, err := checkImage(img, w, h)
	if err != nil {
		return nil, false, err
	}
	force := 0
	if forceKeyframe || e.forceKey {
		force = 1
	}
	code := C.rm_enc_encode(e.c,
		(*C.uint8_t)(unsafe.Pointer(&img.Y[yOff])), C.int(img.YStride),
		(*C.uint8_t)(unsafe.Pointer(&img.Cb[cOff])), (*C.uint8_t)(unsafe.Pointer(&img.Cr[cOff])), C.int(img.CStride),
		C.int64_t(e.pts), C.int(force))
	runtime.KeepAlive(img)
	e.pts++
	if code != C.VPX_CODEC_OK {
		return nil, false, e.codecErr("encode", code)
	}
	if e.c.len == 0 {
		// Dropped: a keyframe asked for is still owed.
		e.forceKey = force == 1
		return nil, false, nil
	}
	if e.c.keyframe != 0 {
		e.forceKey = false
	}
	e.out = append(e.out[:0], unsafe.Slice((*byte)(unsafe.Pointer(e.c.buf)), int(e.c.len))...)
	return e.out, e.c.keyframe != 0, nil
}

// checkImage checks that img is a 4:2:0 image of w x h whose planes hold every sample the C
// side will read, and returns the offsets of its first luma and chroma samples.
func checkImage(img *image.YCbCr, w, h int) (yOff, cOff int, err error) {
	if img == nil {
		return 0, 0, fmt.Errorf("%w: nil image", ErrImage)
	}
	r := img.Rect
	if img.SubsampleRatio != image.YCbCrSubsampleRatio420 || r.Dx() != w || r.Dy() != h {
		return 0, 0, fmt.Errorf("%w: got %v %v, want %dx%d 4:2:0", ErrImage, r, img.SubsampleRatio, w, h)
	}
	cw, ch := (w+1)/2, (h+1)/2
	// Strides no longer than their planes also keep the products below from overflowing.
	if r.Min.X%2 != 0 || r.Min.Y%2 != 0 || img.YStride < w || img.CStride < cw ||
		img.YStride > len(img.Y) || img.CStride > len(img.Cb) {
		return 0, 0, fmt.Errorf("%w: odd origin %v or short strides %d/%d", ErrImage, r.Min, img.YStride, img.CStride)
	}
	yOff, cOff = img.YOffset(r.Min.X, r.Min.Y), img.COffset(r.Min.X, r.Min.Y)
	if yOff < 0 || cOff < 0 || len(img.Y)-yOff < (h-1)*img.YStride+w ||
		len(img.Cb)-cOff < (ch-1)*img.CStride+cw || len(img.Cr)-cOff < (ch-1)*img.CStride+cw {
		return 0, 0, fmt.Errorf("%w: planes too short for %dx%d", ErrImage, w, h)
	}
	return yOff, cOff, nil
}

// SetBitrate changes the target bitrate, from the next frame on.
func (e *Encoder) SetBitrate(kbps int) error {
	if e.c == nil {
		return ErrClosed
	}
	if kbps < 1 || kbps > maxBitrateKbps {
		return fmt.Errorf("%w: bitrate %d kbit/s, want 1..%d", ErrInvalidConfig, kbps, maxBitrateKbps)
	}
	if code := C.rm_enc_set_bitrate(e.c, C.uint(kbps)); code != C.VPX_CODEC_OK {
		return e.codecErr("set bitrate", code)
	}
	e.cfg.BitrateKbps = kbps
	return nil
}

// Bitrate is the target bitrate in kbit/s.
func (e *Encoder) Bitrate() int { return e.cfg.BitrateKbps }

// Size is the size frames are encoded at.
func (e *Encoder) Size() (w, h int) { return e.cfg.Width, e.cfg.Height }

// Resize changes the encoded size, from the next frame on, which is a keyframe. w and h must be
// even and at least MinDimension. The bitrate and the other settings stay; the region of
// interest is cleared (its rectangle was in the old size's pixels).
//
// libvpx's VP8 encoder changes size in place only up to the size it was created with; for a
// larger size Resize destroys and re-creates it, which also resets its rate control.
func (e *Encoder) Resize(w, h int) error {
	if e.c == nil {
		return ErrClosed
	}
	if err := checkSize(w, h); err != nil {
		return err
	}
	if w == e.cfg.Width && h == e.cfg.Height {
		return nil
	}
	inPlace := w <= int(e.c.init_w) && h <= int(e.c.init_h)
	if inPlace {
		if code := C.rm_enc_resize(e.c, C.int(w), C.int(h)); code != C.VPX_CODEC_OK {
			inPlace = false // fall back to a new encoder
		} else if e.roi.on {
			// The old map no longer fits the macroblock grid.
			if code := C.rm_enc_clear_roi(e.c); code != C.VPX_CODEC_OK {
				inPlace = false
			}
		}
	}
	if !inPlace {
		C.rm_enc_destroy(e.c)
		if err := e.init(w, h); err != nil {
			// Leave a working encoder at the old size if we can.
			if err2 := e.init(e.cfg.Width, e.cfg.Height); err2 != nil {
				e.Close()
			}
			return err
		}
		e.reinits++
	}
	e.cfg.Width, e.cfg.Height = w, h
	e.roi = roiState{}
	e.forceKey = true
	return nil
}

// SetROI makes libvpx spend more bits on rect (in the current frame's pixels, rounded out to
// 16x16 macroblocks), such as the area around the consumer's pointer: deltaQ (-63..63) is
// added to the quantizer there, so a negative value means better quality. The rest of the
// frame pays for it under the constant bitrate. deltaQ is in the same 0..63 quantizer scale as
// libvpx's rc_min_quantizer and rc_max_quantizer (this encoder uses 4..56).
//
// The first SetROI also turns off libvpx's cyclic background refresh (VP8 uses the same
// segmentation for both), for good: ClearROI does not bring it back, a re-initialising Resize
// does. A rectangle that misses the frame clears the
// region. Setting the same region again costs nothing.
func (e *Encoder) SetROI(rect image.Rectangle, deltaQ int) error {
	if e.c == nil {
		return ErrClosed
	}
	if deltaQ < -63 || deltaQ > 63 {
		return fmt.Errorf("%w: ROI delta q %d, want -63..63", ErrInvalidConfig, deltaQ)
	}
	w, h := e.cfg.Width, e.cfg.Height
	rect = rect.Canon().Intersect(image.Rect(0, 0, w, h))
	if rect.Empty() || deltaQ == 0 {
		return e.ClearROI()
	}
	cols, rows := (w+15)/16, (h+15)/16
	c0, r0 := rect.Min.X/16, rect.Min.Y/16
	c1, r1 := (rect.Max.X+15)/16, (rect.Max.Y+15)/16
	want := roiState{on: true, rect: image.Rect(c0, r0, c1, r1), deltaQ: deltaQ}
	if e.roi == want {
		return nil
	}
	m := make([]byte, rows*cols)
	for r := r0; r < r1; r++ {
		for c := c0; c < c1; c++ {
			m[r*cols+c] = 1
		}
	}
	code := C.rm_enc_set_roi(e.c, (*C.uint8_t)(unsafe.Pointer(&m[0])), C.uint(rows), C.uint(cols), C.int(deltaQ))
	runtime.KeepAlive(m)
	if code != C.VPX_CODEC_OK {
		return e.codecErr("set ROI", code)
	}
	e.roi = want
	return nil
}

// ClearROI encodes the whole frame alike again.
func (e *Encoder) ClearROI() error {
	if e.c == nil {
		return ErrClosed
	}
	if !e.roi.on {
		return nil
	}
	if code := C.rm_enc_clear_roi(e.c); code != C.VPX_CODEC_OK {
		return e.codecErr("clear ROI", code)
	}
	e.roi = roiState{}
	return nil
}

// Close frees the encoder. Calling it again does nothing; other methods then return ErrClosed.
func (e *Encoder) Close() error {
	if e.c == nil {
		return nil
	}
	e.cleanup.Stop()
	C.rm_enc_free(e.c)
	e.c = nil
	e.out = nil
	return nil
}
