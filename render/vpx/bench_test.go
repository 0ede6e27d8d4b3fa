package vpx

import (
	"bytes"
	"fmt"
	"image"
	"testing"
)

func benchEncode(b *testing.B, w, h, kbps int) {
	frames := sceneFrames(w, h)
	for _, c := range []struct{ threads, cpuUsed int }{{1, 8}, {2, 8}, {1, 16}, {2, 16}} {
		threads := c.threads
		b.Run(fmt.Sprintf("threads=%d/cpu-used=%d", threads, c.cpuUsed), func(b *testing.B) {
			e := newEncoder(b, EncoderConfig{Width: w, Height: h, BitrateKbps: kbps, Threads: threads, CPUUsed: c.cpuUsed})
			cpu, frames := encodeLoop(b, e, frames, 30)
			b.ReportMetric(float64(cpu)/float64(frames), "cpu-ns/frame")
		})
	}
}

// encodeLoop encodes warm frames (past the keyframe and the rate control's first adjustments),
// then one frame per benchmark iteration, reporting bytes/frame; it returns the CPU time of the
// measured frames and their count.
func encodeLoop(b *testing.B, e *Encoder, frames []*image.YCbCr, warm int) (cpuNS int64, n int) {
	for i := range warm {
		if _, _, err := e.Encode(frames[i%len(frames)], false); err != nil {
			b.Fatal(err)
		}
	}
	total := 0
	cpu := cpuTime()
	for b.Loop() {
		f, _, err := e.Encode(frames[n%len(frames)], false)
		if err != nil {
			b.Fatal(err)
		}
		total += len(f)
		n++
	}
	b.ReportMetric(float64(total)/float64(n), "bytes/frame")
	return int64(cpuTime() - cpu), n
}

// BenchmarkEncode720p: one 1280x720 frame of moving content at 2500 kbit/s (ns/op is per frame,
// wall clock; cpu-ns/frame is the CPU time of all the encoder's threads).
func BenchmarkEncode720p(b *testing.B) { benchEncode(b, 1280, 720, 2500) }

// BenchmarkEncode1080p: one 1920x1080 frame at 4000 kbit/s.
func BenchmarkEncode1080p(b *testing.B) { benchEncode(b, 1920, 1080, 4000) }

// BenchmarkDecode720p: decoding one 1280x720 frame (2500 kbit/s) into a new image.
func BenchmarkDecode720p(b *testing.B) {
	frames := sceneFrames(1280, 720)
	e := newEncoder(b, EncoderConfig{Width: 1280, Height: 720, BitrateKbps: 2500})
	var stream [][]byte // starts with a keyframe, so the decoder can loop over it
	total := 0
	for _, f := range frames {
		data, _, err := e.Encode(f, false)
		if err != nil {
			b.Fatal(err)
		}
		stream = append(stream, bytes.Clone(data))
		total += len(data)
	}
	d := newDecoder(b)
	i := 0
	cpu := cpuTime()
	for b.Loop() {
		if _, err := d.Decode(stream[i%len(stream)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(total)/float64(len(stream)), "bytes/frame")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/frame")
}
