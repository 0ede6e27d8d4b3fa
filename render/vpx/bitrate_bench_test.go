package vpx

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkBitrate720p60: what the bitrate does to a 1280x720 frame's encoding and decoding at 60
// frames/s (the sender's settings: one thread, speed -16). The congestion controller may take a
// loopback stream to the sender's cap (MaxKbps, 8000 by default); a frame's tokens, which both ends
// code one by one, grow with it.
func BenchmarkBitrate720p60(b *testing.B) {
	frames := sceneFrames(1280, 720)
	for _, kbps := range []int{2500, 4000, 8000} {
		cfg := EncoderConfig{Width: 1280, Height: 720, FPS: 60, BitrateKbps: kbps, Threads: 1, CPUUsed: 16}
		b.Run(fmt.Sprintf("encode/kbps=%d", kbps), func(b *testing.B) {
			encodeLoop(b, newEncoder(b, cfg), frames, 60)
		})
		b.Run(fmt.Sprintf("decode/kbps=%d", kbps), func(b *testing.B) {
			e := newEncoder(b, cfg)
			var stream [][]byte
			for i := range 2 * len(frames) {
				data, _, err := e.Encode(frames[i%len(frames)], i == len(frames))
				if err != nil {
					b.Fatal(err)
				}
				if i >= len(frames) { // from the forced keyframe on, past the rate control's start
					stream = append(stream, bytes.Clone(data))
				}
			}
			d := newDecoder(b)
			i := 0
			for b.Loop() {
				if _, err := d.Decode(stream[i%len(stream)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
