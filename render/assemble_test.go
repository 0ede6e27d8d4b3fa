package render

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// packets splits frame into RTP packets as pion's sender does: VP8 descriptors, marker on the last.
func packets(frame []byte, seq uint16, ts uint32) []*rtp.Packet {
	pl := (&codecs.VP8Payloader{}).Payload(200, frame)
	out := make([]*rtp.Packet, len(pl))
	for i, p := range pl {
		out[i] = &rtp.Packet{Header: rtp.Header{SequenceNumber: seq + uint16(i), Timestamp: ts, Marker: i == len(pl)-1}, Payload: p}
	}
	return out
}

func frameData(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }

func TestAssemblerInOrder(t *testing.T) {
	a := newAssembler()
	seq := uint16(65530) // wraps inside the second frame
	for i := range 3 {
		f := frameData(700, byte(i))
		ps := packets(f, seq, uint32(i*3000))
		seq += uint16(len(ps))
		var got [][]byte
		for _, p := range ps {
			fs, lost, err := a.push(p)
			if err != nil || lost {
				t.Fatalf("frame %d: lost %v err %v", i, lost, err)
			}
			got = append(got, fs...)
		}
		if len(got) != 1 || !bytes.Equal(got[0], f) {
			t.Fatalf("frame %d: got %d frames", i, len(got))
		}
	}
}

func TestAssemblerReordered(t *testing.T) {
	a := newAssembler()
	f := frameData(1000, 7)
	ps := packets(f, 100, 0)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	var got [][]byte
	for _, p := range ps {
		fs, _, err := a.push(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fs...)
	}
	if len(got) != 1 || !bytes.Equal(got[0], f) {
		t.Fatalf("got %d frames", len(got))
	}
	// a duplicate of a packet already consumed changes nothing
	if fs, lost, _ := a.push(ps[0]); len(fs) != 0 || lost {
		t.Fatalf("duplicate: %d frames, lost %v", len(fs), lost)
	}
}

func TestAssemblerLoss(t *testing.T) {
	a := newAssembler()
	seq := uint16(0)
	push := func(ps []*rtp.Packet) (n int, lost bool) {
		for _, p := range ps {
			fs, l, err := a.push(p)
			if err != nil {
				t.Fatal(err)
			}
			n += len(fs)
			lost = lost || l
		}
		return n, lost
	}
	f0 := packets(frameData(600, 1), seq, 0)
	seq += uint16(len(f0))
	f1 := packets(frameData(600, 2), seq, 3000)
	seq += uint16(len(f1))
	f2 := packets(frameData(600, 3), seq, 6000)
	if n, lost := push(f0); n != 1 || lost {
		t.Fatalf("frame 0: %d, lost %v", n, lost)
	}
	if n, _ := push(f1[1:]); n != 0 { // frame 1's first packet never comes
		t.Fatalf("an incomplete frame came out")
	}
	n, lost := push(f2)
	if n != 1 || !lost {
		t.Fatalf("frame 2: %d frames, lost %v; want it out and the loss reported", n, lost)
	}
	if fs, l, _ := a.push(f1[0]); len(fs) != 0 || l { // too late now
		t.Fatalf("a late packet of a skipped frame produced %d frames", len(fs))
	}
}

func FuzzAssembler(f *testing.F) {
	var seed []byte
	for _, p := range packets(frameData(500, 9), 10, 0) {
		b, _ := p.Marshal()
		seed = append(seed, byte(len(b)))
		seed = append(seed, b...)
	}
	f.Add(seed)
	f.Add([]byte{3, 0x80, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := newAssembler()
		for len(data) > 0 {
			n := int(data[0])
			data = data[1:]
			if n > len(data) {
				n = len(data)
			}
			var p rtp.Packet
			if err := p.Unmarshal(data[:n]); err == nil {
				fs, _, _ := a.push(&p)
				for _, fr := range fs {
					if len(fr) > maxFrameBytes {
						t.Fatalf("frame of %d bytes", len(fr))
					}
				}
			}
			data = data[n:]
			if len(a.pkts) > maxPending {
				t.Fatalf("%d packets held", len(a.pkts))
			}
		}
	})
}
