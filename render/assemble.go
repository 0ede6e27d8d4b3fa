package render

import (
	"errors"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// maxFrameBytes bounds one assembled VP8 frame: a 1080p keyframe at the highest quality the
// encoder allows stays far below it; anything larger is a malformed or hostile stream.
const maxFrameBytes = 4 << 20

// maxPending bounds the packets an assembler holds while it waits for a missing one.
const maxPending = 2048

// errFrameTooLarge is returned when a frame's packets add up past maxFrameBytes.
var errFrameTooLarge = errors.New("render: frame too large")

// assembler rebuilds VP8 frames from RTP packets as soon as a frame's last packet (the marker bit)
// and every packet before it have arrived. Unlike pion's samplebuilder it does not wait for the
// next frame's first packet, which would add a whole frame interval of latency.
//
// A frame is complete when the packets from the one that starts it (VP8 descriptor S=1, PID=0) to
// the one with the marker bit have consecutive sequence numbers. Packets of older frames that arrive
// after a newer frame completed are dropped; a frame that can no longer complete is reported as a
// loss, so the player asks for a keyframe (RTCP PLI) instead of decoding from a broken reference.
type assembler struct {
	pkts map[uint16]*rtp.Packet // by sequence number
	// lastDone is the sequence number of the last packet of the last frame handed out; valid once
	// started is set.
	lastDone uint16
	started  bool
	// lost counts frames skipped because a packet never came.
	lost int
}

func newAssembler() *assembler { return &assembler{pkts: make(map[uint16]*rtp.Packet)} }

// seqLess reports whether a comes before b in RTP's wrapping sequence space.
func seqLess(a, b uint16) bool { return a != b && b-a < 1<<15 }

// push adds one packet and returns the frames it completes, oldest first, and whether frames were
// lost on the way (a gap the assembler gave up on).
func (a *assembler) push(p *rtp.Packet) (frames [][]byte, lost bool, err error) {
	if a.started && !seqLess(a.lastDone, p.SequenceNumber) {
		return nil, false, nil // a late duplicate or a retransmission of a frame already done or skipped
	}
	if _, dup := a.pkts[p.SequenceNumber]; dup {
		return nil, false, nil
	}
	a.pkts[p.SequenceNumber] = p
	if len(a.pkts) > maxPending {
		a.reset()
		return nil, true, nil
	}
	for {
		frame, end, ok, err := a.complete()
		if err != nil {
			a.reset()
			return frames, true, err
		}
		if !ok {
			break
		}
		// Anything between the last frame handed out and this one's start never completed.
		if a.dropBefore(end, frame.start) {
			lost = true
			a.lost++
		}
		frames = append(frames, frame.data)
		a.lastDone, a.started = end, true
	}
	return frames, lost, nil
}

type span struct {
	start uint16
	data  []byte
}

// complete finds the oldest frame whose packets are all present: a start packet followed by
// consecutive packets up to a marker. It returns the frame and the sequence number of its last
// packet, and removes its packets.
func (a *assembler) complete() (span, uint16, bool, error) {
	found := false
	var start, end uint16
	for seq, p := range a.pkts {
		if !p.Marker || (found && !seqLess(seq, end)) {
			continue
		}
		if s, ok := a.frameStart(seq); ok {
			found, start, end = true, s, seq
		}
	}
	if !found {
		return span{}, 0, false, nil
	}
	var out []byte
	var vp codecs.VP8Packet
	for s := start; ; s++ {
		payload, err := vp.Unmarshal(a.pkts[s].Payload)
		if err != nil {
			return span{}, 0, false, err
		}
		if len(out)+len(payload) > maxFrameBytes {
			return span{}, 0, false, errFrameTooLarge
		}
		out = append(out, payload...)
		delete(a.pkts, s)
		if s == end {
			break
		}
	}
	return span{start: start, data: out}, end, true, nil
}

// frameStart walks back from the marker packet end through packets of the same timestamp to the
// one that starts partition 0; ok is false while one is missing.
func (a *assembler) frameStart(end uint16) (uint16, bool) {
	ts := a.pkts[end].Timestamp
	seq := end
	for n := 0; n <= maxPending; n++ {
		p, ok := a.pkts[seq]
		if !ok || p.Timestamp != ts {
			return 0, false
		}
		if isFrameStart(p.Payload) {
			return seq, true
		}
		seq--
	}
	return 0, false
}

// dropBefore removes every packet older than the frame ending at end and reports whether a frame
// was skipped: the new frame does not follow the last one handed out directly.
func (a *assembler) dropBefore(end, start uint16) bool {
	for seq := range a.pkts {
		if seqLess(seq, end) {
			delete(a.pkts, seq)
		}
	}
	return a.started && start != a.lastDone+1
}

func (a *assembler) reset() {
	clear(a.pkts)
	a.started = false
	a.lost++
}

// isFrameStart reports whether a VP8 RTP payload starts a frame: the descriptor's S bit set with
// partition index 0.
func isFrameStart(payload []byte) bool {
	return len(payload) > 0 && payload[0]&0x10 != 0 && payload[0]&0x0f == 0
}
