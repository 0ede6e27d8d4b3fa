package vpx

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by the methods of a closed Encoder or Decoder.
	ErrClosed = errors.New("vpx: closed")
	// ErrInvalidConfig is returned (wrapped) for an EncoderConfig or size that cannot work.
	ErrInvalidConfig = errors.New("vpx: invalid config")
	// ErrImage is returned (wrapped) when Encode gets an image that is not 4:2:0 of the
	// encoder's size, or whose planes are too short.
	ErrImage = errors.New("vpx: image does not match the encoder")
	// ErrCodec is matched (errors.Is) by every *CodecError: libvpx refused.
	ErrCodec = errors.New("vpx: libvpx error")
	// ErrNoFrame is returned by Decode for input that decoded but produced no picture to show.
	ErrNoFrame = errors.New("vpx: no frame to show")
	// ErrFrameTooLarge is returned by Decode for a keyframe whose size exceeds the decoder's
	// limit, before libvpx allocates anything for it.
	ErrFrameTooLarge = errors.New("vpx: frame too large")
)

// CodecError is a libvpx failure: the operation, libvpx's error code and its messages
// (vpx_codec_error and vpx_codec_error_detail).
type CodecError struct {
	Op     string // "encode", "decode", "init", "set bitrate", ...
	Code   int    // vpx_codec_err_t
	Msg    string // vpx_codec_error
	Detail string // vpx_codec_error_detail; may be empty
}

func (e *CodecError) Error() string {
	s := fmt.Sprintf("vpx: %s: %s", e.Op, e.Msg)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes every CodecError match ErrCodec.
func (e *CodecError) Is(target error) bool { return target == ErrCodec }
