package render

import (
	"testing"
	"time"
)

// The render path's figures (docs/BENCHMARKS.md): each benchmark iteration is one whole session
// over loopback (real sockets, real WebRTC, libvpx both ends), measured by the consumer from its
// frame stamps. ns/op is the session's wall time and means little; the metrics are the point.

func benchSession(b *testing.B, hold time.Duration, so StreamOptions, po PlayOptions) {
	var first, p50, p99 []time.Duration
	var fps, kbps float64
	var frames, lost int
	for range b.N {
		_, serr, prep, perr := session(b, hold, so, po)
		if perr != nil || serr != nil || prep.FramesStamped == 0 {
			b.Fatalf("session: play %v, serve %v, report %+v", perr, serr, prep)
		}
		first = append(first, prep.FirstFrame)
		p50 = append(p50, prep.LatencyP50)
		p99 = append(p99, prep.LatencyP99)
		fps += prep.FPS
		kbps += prep.BitrateKbps
		frames += prep.FramesStamped
		lost += prep.FramesLost
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentileDur(first, 50)), "first-frame-ms-p50")
	b.ReportMetric(ms(percentileDur(p50, 50)), "latency-ms-p50")
	b.ReportMetric(ms(percentileDur(p99, 50)), "latency-ms-p99")
	b.ReportMetric(fps/float64(b.N), "fps")
	b.ReportMetric(kbps/float64(b.N), "kbit/s")
	b.ReportMetric(float64(lost)/float64(frames), "lost/frame")
}

// BenchmarkFirstFrame: from Play's start (offer) to the first decoded, stamped frame: peer
// connection set-up, ICE on loopback, DTLS, the first keyframe encoded, sent and decoded.
func BenchmarkFirstFrame(b *testing.B) {
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 60}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true}}
	benchSession(b, 500*time.Millisecond, so, po)
}

// BenchmarkFirstFrameRelay is BenchmarkFirstFrame forced through an embedded TURN relay on loopback.
func BenchmarkFirstFrameRelay(b *testing.B) {
	ice := relayServer(b)
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 60}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true, RelayOnly: true, ICEServers: ice}}
	benchSession(b, 700*time.Millisecond, so, po)
}

// BenchmarkFrameLatency720p60: render (stamp) to decoded, in-process Go client, 1280x720 at 60 fps
// for 5 s per iteration.
func BenchmarkFrameLatency720p60(b *testing.B) {
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 60}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true}, Pointer: true}
	benchSession(b, 5*time.Second, so, po)
}

// BenchmarkFrameLatency720p60Relay is the same through the relay: the difference is what the relay
// adds.
func BenchmarkFrameLatency720p60Relay(b *testing.B) {
	ice := relayServer(b)
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 60}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true, RelayOnly: true, ICEServers: ice}, Pointer: true}
	benchSession(b, 5*time.Second, so, po)
}

// BenchmarkFrameLatency720p60Capped is BenchmarkFrameLatency720p60 with the bitrate held at
// 2500 kbit/s instead of the default cap of 8000, which loopback reaches: smaller frames, fewer
// tokens to code at both ends.
func BenchmarkFrameLatency720p60Capped(b *testing.B) {
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 60,
		Bitrates: Bitrates{StartKbps: 2500, MaxKbps: 2500}}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true}, Pointer: true}
	benchSession(b, 5*time.Second, so, po)
}
