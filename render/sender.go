package render

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/scene"
	"github.com/rendermesh/rendermesh/render/vpx"
)

// Bitrates bound the encoder's target, in kbit/s; the congestion controller moves it in between.
type Bitrates struct {
	StartKbps, MinKbps, MaxKbps int
}

// StreamOptions configure the container's end of a render session.
type StreamOptions struct {
	PeerOptions
	// Width, Height and FPS are the stream's largest size and its frame rate; an offer may ask for
	// less. Defaults 1280x720 at 30 fps.
	Width, Height, FPS int
	Bitrates           Bitrates // defaults 2500 / 150 / 8000
	// Seed seeds the built-in scene (a checker's challenge nonce, later); nil: a fixed seed.
	Seed []byte
	// Source produces the frames of a real application; nil: the built-in scene. Serve closes it.
	// A checker's challenge replaces it with the built-in scene seeded by the challenge.
	Source scene.Source
	// Threads and CPUUsed tune libvpx (defaults 1 and 16, libvpx's fastest realtime speed: on a
	// busy 2-core machine a second encoder thread costs more in waiting than it saves, and 720p60
	// leaves 16 ms a frame for rendering and encoding both).
	Threads, CPUUsed int
	// NoPredict draws the consumer's pointer where it was last reported instead of where the
	// Kalman filter expects it one round trip later.
	NoPredict bool
	// ROI encodes the area around the pointer at higher quality.
	ROI bool
	Log *slog.Logger

	fixedSize bool // no resolution ladder (a checker's challenge)
}

func (o *StreamOptions) defaults() {
	if o.Width == 0 || o.Height == 0 {
		o.Width, o.Height = 1280, 720
	}
	if o.FPS == 0 {
		o.FPS = 30
	}
	if o.Bitrates.StartKbps == 0 {
		o.Bitrates.StartKbps = 2500
	}
	if o.Bitrates.MinKbps == 0 {
		o.Bitrates.MinKbps = 150
	}
	if o.Bitrates.MaxKbps == 0 {
		o.Bitrates.MaxKbps = 8000
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.CPUUsed == 0 {
		o.CPUUsed = 16
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// StreamReport says what the container sent.
type StreamReport struct {
	Frames      int           `json:"frames"`
	Keyframes   int           `json:"keyframes"`
	PLIs        int           `json:"plis"` // keyframe requests from the consumer
	Dropped     int           `json:"dropped"`
	Bytes       int64         `json:"bytes"`
	Resizes     int           `json:"resizes"`
	Restarts    int           `json:"ice_restarts"`
	InputEvents int           `json:"input_events"`
	Relay       bool          `json:"relay"`
	EncodeP50   time.Duration `json:"encode_p50_ns"`
	Width       int           `json:"width"`
	Height      int           `json:"height"`
}

// ladder is the resolutions the sender steps through when bandwidth drops, with the least bitrate
// (kbit/s) each needs to look acceptable in VP8 at 30 fps; it steps up again when the estimate
// clears the next rung by upHeadroom.
var ladder = []struct {
	w, h, kbps int
}{
	{1920, 1080, 3000}, {1280, 720, 1200}, {960, 540, 700}, {640, 360, 350}, {480, 270, 200}, {320, 180, 0},
}

const (
	upHeadroom   = 1.3
	rateInterval = 250 * time.Millisecond
	resizeHold   = 2 * time.Second
)

// sender is one render session at the container.
type sender struct {
	o       StreamOptions
	sig     Signaller
	sendMu  sync.Mutex
	trickle *trickle
	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticSample
	est     atomic.Pointer[cc.BandwidthEstimator]

	forceKey atomic.Bool
	plis     atomic.Int64
	inputs   *inputState

	connected chan struct{}
	failed    chan struct{}
	done      chan struct{} // closed when Serve returns
	connOnce  sync.Once
	failOnce  sync.Once
	restarts  atomic.Int64
}

// Serve answers a consumer's render offer (already authorised by the caller) and streams until ctx
// ends, the consumer ends the session or the connection fails for good. Candidates and later offers
// (ICE restarts) arrive on sig.
func Serve(ctx context.Context, sig Signaller, offer *pb.RenderOffer, o StreamOptions) (*StreamReport, error) {
	o.defaults()
	o.PeerOptions.ICEServers = append(append([]*pb.IceServer(nil), o.PeerOptions.ICEServers...), offer.GetIceServers()...)
	o.PeerOptions.RelayOnly = o.PeerOptions.RelayOnly || offer.GetRelayOnly()
	if w, h := int(offer.GetWidth()), int(offer.GetHeight()); w >= 16 && h >= 16 && w <= o.Width && h <= o.Height && w%2 == 0 && h%2 == 0 {
		o.Width, o.Height = w, h
	}
	if f := int(offer.GetFps()); f > 0 && f <= 120 {
		o.FPS = f
	}
	if c := offer.GetChallenge(); len(c) > 0 {
		// A checker's challenge: the built-in scene, seeded by its nonce, whatever the app.
		if len(c) > MaxChallenge {
			_ = (&sender{sig: sig}).send(&pb.RenderSignal{Refused: "challenge too long"})
			return nil, fmt.Errorf("%w: challenge of %d bytes", ErrSignal, len(c))
		}
		if o.Source != nil {
			_ = o.Source.Close()
		}
		o.Seed, o.Source = c, nil
		o.fixedSize = true // a checker measures the size it asked for
	}
	if o.Source != nil {
		defer o.Source.Close() // Serve owns the source: a command source's process ends with the stream
	}
	sink, _ := o.Source.(InputSink)
	s := &sender{o: o, sig: sig, trickle: &trickle{}, inputs: newInputState(!o.NoPredict), connected: make(chan struct{}), failed: make(chan struct{}), done: make(chan struct{})}
	defer close(s.done)
	s.trickle.send = s.send
	s.inputs.sink = sink
	api, err := newAPI(o.PeerOptions, &o.Bitrates, func(e cc.BandwidthEstimator) { s.est.Store(&e) })
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(o.PeerOptions.configuration())
	if err != nil {
		return nil, fmt.Errorf("render: peer connection: %w", err)
	}
	defer pc.Close()
	s.pc = pc
	relay := watchRelay(pc)
	s.track, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "rendermesh")
	if err != nil {
		return nil, err
	}
	rtpSender, err := pc.AddTrack(s.track)
	if err != nil {
		return nil, fmt.Errorf("render: add track: %w", err)
	}
	go s.readRTCP(rtpSender)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != InputChannel {
			return
		}
		dc.OnMessage(func(m webrtc.DataChannelMessage) { s.inputs.receive(dc, m.Data) })
		dc.OnOpen(func() { go s.pingLoop(dc) })
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil && offer.GetTrickle() {
			s.trickle.candidate(candidateMsg(c))
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		o.Log.Debug("render connection", "state", st)
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connOnce.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.failOnce.Do(func() { close(s.failed) })
		}
	})
	if err := s.answer(offer); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- s.signalLoop(ctx) }()

	select {
	case <-s.connected:
	case <-s.failed:
		_ = s.send(&pb.RenderSignal{Refused: refusedNoPath})
		return nil, ErrNoPath
	case err := <-ended:
		if err == nil {
			err = ErrEndedEarly
		}
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rep, err := s.stream(ctx, ended)
	rep.Restarts = int(s.restarts.Load())
	rep.Relay = relay.relayed()
	_ = s.send(&pb.RenderSignal{End: true})
	return rep, err
}

// MaxChallenge bounds a checker's challenge nonce.
const MaxChallenge = 64

// InputChannel is the data channel the consumer sends input on.
const InputChannel = "input"

func (s *sender) send(m *pb.RenderSignal) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.sig.Send(m)
}

// answer applies an offer (the first, or an ICE restart) and sends the answer.
func (s *sender) answer(offer *pb.RenderOffer) error {
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.GetSdp()}); err != nil {
		_ = s.send(&pb.RenderSignal{Refused: "bad offer"})
		return fmt.Errorf("%w: offer: %v", ErrSignal, err)
	}
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("render: answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	s.trickle.hold()
	if err := s.pc.SetLocalDescription(ans); err != nil {
		return fmt.Errorf("render: set answer: %w", err)
	}
	if !offer.GetTrickle() {
		<-gathered
	}
	return s.trickle.describe(&pb.RenderSignal{Answer: s.pc.LocalDescription().SDP})
}

// signalLoop applies the consumer's candidates and ICE restarts until the consumer ends.
func (s *sender) signalLoop(ctx context.Context) error {
	for {
		m, err := s.sig.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("render: signalling: %w", err)
		}
		switch {
		case m.GetEnd():
			return nil
		case m.GetCandidate() != nil:
			if err := addCandidate(s.pc, m.GetCandidate()); err != nil {
				s.o.Log.Debug("remote candidate", "err", err)
			}
		case m.GetOffer() != nil:
			s.restarts.Add(1)
			if err := s.answer(m.GetOffer()); err != nil {
				return err
			}
		}
	}
}

// pingInterval is how often the container measures the input round trip (its prediction horizon).
const pingInterval = 500 * time.Millisecond

func (s *sender) pingLoop(dc *webrtc.DataChannel) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.inputs.pinger.ping(dc); err != nil {
				return
			}
		}
	}
}

// readRTCP runs the interceptors (NACK responses, reports) and turns keyframe requests into a
// forced keyframe.
func (s *sender) readRTCP(r *webrtc.RTPSender) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.forceKey.Store(true)
				s.plis.Add(1)
			}
		}
	}
}

// stream renders, encodes and sends frames at the frame rate, following the bandwidth estimate.
func (s *sender) stream(ctx context.Context, ended <-chan error) (*StreamReport, error) {
	o := s.o
	rep := &StreamReport{}
	rung := startRung(o.Width, o.Height)
	w, h := ladderSize(rung, o.Width, o.Height)
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{Width: w, Height: h, FPS: o.FPS, BitrateKbps: o.Bitrates.StartKbps, Threads: o.Threads, CPUUsed: o.CPUUsed})
	if err != nil {
		return rep, err
	}
	defer enc.Close()
	src := o.Source
	var sc *scene.Scene
	var full *image.YCbCr // the source's frame before scaling
	if src == nil {
		sc = scene.New(w, h, o.Seed)
	} else {
		sw, sh := src.Size()
		full = scene.NewFrame(sw, sh)
	}
	frame := scene.NewFrame(w, h)
	interval := time.Second / time.Duration(o.FPS)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	rateTick := time.NewTicker(rateInterval)
	defer rateTick.Stop()
	var encTimes []time.Duration
	lastResize := time.Now()
	bitrate := o.Bitrates.StartKbps
	s.forceKey.Store(true)
	var n uint32
	for {
		select {
		case <-ctx.Done():
			return s.finish(rep, encTimes, w, h), nil
		case err := <-ended:
			return s.finish(rep, encTimes, w, h), err
		case <-s.failed:
			// The consumer closing its end shows as a closed connection just before (or after)
			// its end message: wait a moment for it before calling the connection failed.
			select {
			case err := <-ended:
				return s.finish(rep, encTimes, w, h), err
			case <-time.After(time.Second):
				return s.finish(rep, encTimes, w, h), fmt.Errorf("render: connection failed")
			}
		case <-rateTick.C:
			ep := s.est.Load()
			if ep == nil {
				continue
			}
			target := min(max((*ep).GetTargetBitrate()/1000, o.Bitrates.MinKbps), o.Bitrates.MaxKbps)
			if diff := target - bitrate; diff > bitrate/10 || -diff > bitrate/10 {
				if err := enc.SetBitrate(target); err != nil {
					return s.finish(rep, encTimes, w, h), err
				}
				bitrate = target
			}
			if next := pickRung(rung, target, o.Width, o.Height); !o.fixedSize && next != rung && time.Since(lastResize) > resizeHold {
				nw, nh := ladderSize(next, o.Width, o.Height)
				if err := enc.Resize(nw, nh); err != nil {
					return s.finish(rep, encTimes, w, h), err
				}
				o.Log.Debug("render resolution", "from", fmt.Sprintf("%dx%d", w, h), "to", fmt.Sprintf("%dx%d", nw, nh), "kbps", target)
				rung, w, h = next, nw, nh
				frame = scene.NewFrame(w, h)
				if sc != nil {
					sc = scene.New(w, h, o.Seed)
				}
				lastResize = time.Now()
				rep.Resizes++
				s.forceKey.Store(true)
			}
		case <-tick.C:
			n++
			x, y, visible := s.inputs.pointer()
			if sc != nil {
				sc.SetPointer(x, y, visible)
				sc.Render(frame, n, time.Now())
			} else {
				if err := src.Next(full); err != nil {
					return s.finish(rep, encTimes, w, h), fmt.Errorf("render: source: %w", err)
				}
				scaleInto(frame, full)
				scene.Stamp(frame, n, time.Now())
			}
			if o.ROI {
				r := image.Rectangle{} // an empty region clears it
				if visible {
					r = image.Rect(int(x*float64(w))-64, int(y*float64(h))-64, int(x*float64(w))+64, int(y*float64(h))+64).Intersect(frame.Rect)
				}
				if err := enc.SetROI(r, -20); err != nil {
					o.Log.Debug("region of interest", "err", err)
				}
			}
			began := time.Now()
			data, key, err := enc.Encode(frame, s.forceKey.Swap(false))
			if err != nil {
				return s.finish(rep, encTimes, w, h), err
			}
			if len(encTimes) < 1<<16 {
				encTimes = append(encTimes, time.Since(began))
			}
			if data == nil {
				rep.Dropped++
				continue
			}
			rep.Frames++
			rep.Bytes += int64(len(data))
			if key {
				rep.Keyframes++
			}
			if err := s.track.WriteSample(media.Sample{Data: data, Duration: interval}); err != nil && !errors.Is(err, context.Canceled) {
				return s.finish(rep, encTimes, w, h), fmt.Errorf("render: write: %w", err)
			}
		}
	}
}

func (s *sender) finish(rep *StreamReport, encTimes []time.Duration, w, h int) *StreamReport {
	rep.PLIs = int(s.plis.Load())
	rep.InputEvents = s.inputs.count()
	rep.EncodeP50 = percentileDur(encTimes, 50)
	rep.Width, rep.Height = w, h
	return rep
}

// startRung is the largest ladder rung that fits the wanted size.
func startRung(w, h int) int {
	for i, r := range ladder {
		if r.w <= w && r.h <= h {
			return i
		}
	}
	return len(ladder) - 1
}

// ladderSize is rung's size, or the wanted size at the top rung when it lies between rungs.
func ladderSize(rung, w, h int) (int, int) {
	if rung == startRung(w, h) {
		return w, h
	}
	return ladder[rung].w, ladder[rung].h
}

// pickRung steps one rung down when kbps falls below the current rung's floor, and one up when it
// clears the next rung's floor with headroom; never above the wanted size.
func pickRung(rung, kbps, w, h int) int {
	top := startRung(w, h)
	if rung < len(ladder)-1 && kbps < ladder[rung].kbps {
		return rung + 1
	}
	if rung > top && float64(kbps) > float64(ladder[rung-1].kbps)*upHeadroom {
		return rung - 1
	}
	return rung
}

// scaleInto resizes src into dst by nearest neighbour (a source's frames when the stream steps down
// the ladder); same sizes copy.
func scaleInto(dst, src *image.YCbCr) {
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	for y := 0; y < dh; y++ {
		sy := y * sh / dh
		drow := dst.Y[y*dst.YStride : y*dst.YStride+dw]
		srow := src.Y[sy*src.YStride:]
		for x := range drow {
			drow[x] = srow[x*sw/dw]
		}
	}
	cdw, cdh := (dw+1)/2, (dh+1)/2
	csw, csh := (sw+1)/2, (sh+1)/2
	for y := 0; y < cdh; y++ {
		sy := y * csh / cdh
		for x := 0; x < cdw; x++ {
			sx := x * csw / cdw
			dst.Cb[y*dst.CStride+x] = src.Cb[sy*src.CStride+sx]
			dst.Cr[y*dst.CStride+x] = src.Cr[sy*src.CStride+sx]
		}
	}
}
