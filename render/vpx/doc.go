// Package vpx is the render path's video codec: a VP8 encoder tuned for live streaming and a VP8
// decoder, over libvpx (cgo, `pkg-config vpx`).
//
// The container side of a render session renders or captures a frame (render/scene), encodes
// it with an Encoder and hands the bytes to a WebRTC track; the consumer's receiver (and the
// tests) turn them back into pictures with a Decoder.
//
// # Encoder
//
// The encoder runs in libvpx's realtime mode: constant bitrate, no frame look-ahead (Encode
// returns the frame it was given), error resilient, a fixed speed (EncoderConfig.CPUUsed), and
// a small rate-control buffer (1 s, starting at 0.5 s, aiming at 0.6 s) so that bitrate changes
// take effect within a few frames. Keyframes come on demand (Encode's forceKeyframe, for a
// receiver's picture loss indication), at the first frame and after Resize, at a scene cut when
// libvpx sees one, and at the latest every KeyframeInterval frames.
//
// The session adapts to the network with SetBitrate (from the congestion controller's estimate)
// and Resize (down and up a resolution ladder), and can sharpen the area around the consumer's
// pointer with SetROI.
//
// Things a caller must know:
//
//   - Encode's returned slice is reused by the next call; copy it to keep it. It is nil when
//     libvpx dropped the frame under rate control, which only happens with a FrameDropThreshold.
//   - Resize changes the size in place while the new size is no larger than the size the encoder
//     was created with; a larger size re-creates the libvpx encoder (its rate control starts
//     afresh). Either way the next frame is a keyframe and the ROI is cleared.
//   - Frames are copied into libvpx's memory; libvpx never holds Go memory.
//   - Neither type is safe for concurrent use.
//
// # Decoder
//
// Decode returns each frame as a new image.YCbCr, copied out of libvpx, of whatever size the
// stream has switched to at its last keyframe. Bytes from the network are untrusted: malformed
// input gives an error, never a crash (FuzzDecode), and keyframes larger than the decoder's limit
// (WithMaxFrameSize, default DefaultMaxDecodeDimension) are refused before libvpx allocates for them.
package vpx
