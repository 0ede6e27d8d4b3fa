// Package scene is the render path's frame producer: the built-in animated scene that a container
// renders when no real application is attached, the stamp that every frame carries, and sources
// that feed frames to the encoder (render/vpx) from the scene or from an external capture command.
//
// # Scene
//
// A Scene draws a moving, textured gradient and several moving, rotating, pulsing shapes whose
// colours, sizes and paths come from a seed. A frame's pixels are a pure function of
// (seed, frame number, size): the same inputs give byte-identical planes on every machine,
// because all the drawing is integer arithmetic (no floating point, no math library). That lets a
// checker hand a container a nonce as the seed and later re-render frames to verify that the
// container really rendered them; RenderContent draws exactly that verifiable part. Render adds
// the consumer's pointer cursor (SetPointer) and the stamp on top.
//
// Frames are 4:2:0 image.YCbCr (NewFrame), drawn straight into the planes; a 1280x720 frame
// takes about 1.5 ms on one core (BenchmarkRender720p).
//
// # Stamp
//
// Every frame carries a stamp in its top-left corner, a contract shared with the browser client,
// which reads it to measure glass-to-glass latency and lost frames:
//
//   - A grid of 64 columns x 2 rows of square blocks starting at (0, 0). The block side is
//     B = max(4, width/64) pixels (integer division), so the grid is 64·B wide and 2·B tall.
//   - A 1 bit is a block of luma 235, a 0 bit a block of luma 16; the chroma under the whole grid
//     is 128 (neutral).
//   - Row 0, columns 0..63: the render time as unix microseconds, uint64, most significant bit
//     first (column 0).
//   - Row 1, columns 0..31: the frame number, uint32, most significant bit first; columns 32..63:
//     the CRC-32 (IEEE, as hash/crc32.ChecksumIEEE) of the 12 bytes
//     [render time, 8 bytes big-endian || frame number, 4 bytes big-endian], most significant
//     bit first.
//   - A reader samples the luma at each block's centre, pixel (c·B + B/2, r·B + B/2), and reads
//     1 when it is 128 or more. It rejects the stamp when the CRC does not match.
//
// Frames narrower than 256 pixels or shorter than 2·B cannot hold a stamp: Stamp leaves them
// alone and ReadStamp reports !ok. The stamp survives VP8 compression at the bitrates the render
// path uses (render/vpx tests it at 640x360/500 kbit/s and 1280x720/1500 kbit/s).
//
// # Sources
//
// A Source hands the encoder loop its frames. SceneSource renders the scene with frame numbers
// counting up and stamps from an injected clock; CommandSource runs a capture command (for
// example ffmpeg grabbing an X display) that writes raw I420 frames to its standard output.
package scene
