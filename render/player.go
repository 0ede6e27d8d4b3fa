package render

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/scene"
	"github.com/rendermesh/rendermesh/render/vpx"
)

// PlayOptions configure the consumer's end of a render session.
type PlayOptions struct {
	PeerOptions
	// Ticket is the session ticket envelope that authorises the session.
	Ticket []byte
	// Challenge is a checker's nonce (at most MaxChallenge bytes): the container streams the
	// built-in scene seeded by it, at the size asked, without stepping down its resolution.
	Challenge []byte
	// Width, Height and FPS ask the container for a size and rate (0: its defaults).
	Width, Height, FPS int
	// Began is when the consumer asked for the session (the match request): first_frame_ms counts
	// from it. Zero: when Play starts.
	Began time.Time
	// PingInterval is how often the input round trip is measured (default 250 ms).
	PingInterval time.Duration
	// Pointer sends a pointer moving in a circle, as a person's mouse would, so the container's
	// cursor (and its prediction) has something to follow.
	Pointer bool
	// OnFrame, when set, sees every decoded frame with its stamp (ok false: no valid stamp).
	OnFrame func(img *image.YCbCr, frame uint32, latency time.Duration, ok bool)
	// Restart lets a caller trigger an ICE restart (network change); nil: never.
	Restart <-chan struct{}
	// WatchNetwork polls the host's addresses this often and restarts ICE when they change (0: off).
	WatchNetwork time.Duration
	Log          *slog.Logger
}

// PlayReport is what the consumer saw. Latencies are render (the container's stamp) to decoded,
// on the consumer's clock: exact on one machine, off by the clock offset between two.
type PlayReport struct {
	FirstFrame      time.Duration `json:"-"`
	Frames          int           `json:"frames"`
	FramesStamped   int           `json:"frames_stamped"`
	FramesLost      int           `json:"frames_lost"`
	DecodeErrors    int           `json:"decode_errors"`
	PLIs            int           `json:"plis"`
	FPS             float64       `json:"fps"`
	BitrateKbps     float64       `json:"bitrate_kbps"`
	LatencyP50      time.Duration `json:"-"`
	LatencyP99      time.Duration `json:"-"`
	InputRTTP50     time.Duration `json:"-"`
	Relay           bool          `json:"relay"`
	Width           int           `json:"width"`
	Height          int           `json:"height"`
	Restarts        int           `json:"ice_restarts"`
	Reconnects      int           `json:"reconnects"` // new render streams to the same container
	Duration        time.Duration `json:"-"`
	latencies, rtts []time.Duration
	bytes           int64
	firstAt, lastAt time.Time
}

// Play offers to the container over sig, plays the stream (decoding every frame with libvpx) and
// measures it until ctx ends or the container ends the session.
func Play(ctx context.Context, sig Signaller, o PlayOptions) (*PlayReport, error) {
	if o.Began.IsZero() {
		o.Began = time.Now()
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 250 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	api, err := newAPI(o.PeerOptions, nil, nil)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(o.PeerOptions.configuration())
	if err != nil {
		return nil, fmt.Errorf("render: peer connection: %w", err)
	}
	defer pc.Close()
	relay := watchRelay(pc)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return nil, err
	}
	ordered := true
	dc, err := pc.CreateDataChannel(InputChannel, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, err
	}
	p := &player{o: o, pc: pc, sig: sig, rep: &PlayReport{}, pinger: newPinger(), done: make(chan struct{})}
	var sendMu sync.Mutex
	send := func(m *pb.RenderSignal) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return sig.Send(m)
	}
	tr := &trickle{send: send}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			tr.candidate(candidateMsg(c))
		}
	})
	failed := make(chan struct{})
	var failOnce sync.Once
	// A path that goes silent (ICE disconnected) is restarted at once rather than left to fail: the
	// network changed under it (Wi-Fi to cellular, a new address) or a NAT binding expired.
	disconnected := make(chan struct{}, 1)
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateDisconnected {
			select {
			case disconnected <- struct{}{}:
			default:
			}
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		o.Log.Debug("render connection", "state", st)
		if st == webrtc.PeerConnectionStateFailed {
			failOnce.Do(func() { close(failed) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { go p.receive(tr) })
	dc.OnOpen(func() { go p.inputLoop(ctx, dc) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { p.pinger.receive(dc, m.Data) })

	offer := func(restart bool) error {
		sd, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
		if err != nil {
			return fmt.Errorf("render: offer: %w", err)
		}
		tr.hold()
		if err := pc.SetLocalDescription(sd); err != nil {
			return fmt.Errorf("render: set offer: %w", err)
		}
		return tr.describe(&pb.RenderSignal{Offer: &pb.RenderOffer{
			Ticket: o.Ticket, Sdp: sd.SDP, Trickle: true, RelayOnly: o.RelayOnly, IceServers: o.ICEServers,
			Width: uint32(o.Width), Height: uint32(o.Height), Fps: uint32(o.FPS), Challenge: o.Challenge,
		}})
	}
	if err := offer(false); err != nil {
		return nil, err
	}
	ended := make(chan error, 1)
	go func() { ended <- p.signalLoop(ctx) }()
	var netChanges <-chan struct{}
	if o.WatchNetwork > 0 {
		netChanges = watchAddrs(ctx, o.WatchNetwork)
	}
	defer func() { _ = send(&pb.RenderSignal{End: true}) }()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-ended:
			runErr = err
			break loop
		case <-failed:
			runErr = ErrNoPath
			break loop
		case <-o.Restart:
		case <-disconnected:
		case <-netChanges:
		}
		// ICE restart: a new offer with fresh credentials on the same signalling stream.
		p.mu.Lock()
		p.rep.Restarts++
		p.mu.Unlock()
		if err := offer(true); err != nil {
			runErr = err
			break loop
		}
	}
	close(p.done)
	p.mu.Lock()
	p.rep.Relay = relay.relayed()
	p.mu.Unlock()
	return p.report(), runErr
}

type player struct {
	o      PlayOptions
	pc     *webrtc.PeerConnection
	sig    Signaller
	pinger *pinger
	done   chan struct{}

	mu  sync.Mutex
	rep *PlayReport
}

func (p *player) signalLoop(ctx context.Context) error {
	for {
		m, err := p.sig.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("render: signalling: %w", err)
		}
		switch {
		case m.GetRefused() == refusedNoPath:
			return ErrNoPath
		case m.GetRefused() != "":
			return fmt.Errorf("%w: %s", ErrRefused, m.GetRefused())
		case m.GetEnd():
			return nil
		case m.GetAnswer() != "":
			if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.GetAnswer()}); err != nil {
				return fmt.Errorf("%w: answer: %v", ErrSignal, err)
			}
		case m.GetCandidate() != nil:
			if err := addCandidate(p.pc, m.GetCandidate()); err != nil {
				p.o.Log.Debug("remote candidate", "err", err)
			}
		}
	}
}

// pliInterval limits keyframe requests: one per interval while frames keep failing.
const pliInterval = 200 * time.Millisecond

// receive reassembles, decodes and measures the video track.
func (p *player) receive(tr *webrtc.TrackRemote) {
	dec, err := vpx.NewDecoder()
	if err != nil {
		p.o.Log.Error("decoder", "err", err)
		return
	}
	defer dec.Close()
	asm := newAssembler()
	var lastPLI time.Time
	needKey := true
	pli := func() {
		if time.Since(lastPLI) < pliInterval {
			return
		}
		lastPLI = time.Now()
		_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
		p.mu.Lock()
		p.rep.PLIs++
		p.mu.Unlock()
	}
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.rep.bytes += int64(len(pkt.Payload))
		p.mu.Unlock()
		frames, lost, err := asm.push(pkt)
		if lost || err != nil {
			needKey = true
			p.mu.Lock()
			p.rep.FramesLost++
			p.mu.Unlock()
		}
		for _, f := range frames {
			key := isKeyframe(f)
			if needKey && !key {
				pli()
				continue
			}
			img, err := dec.Decode(f)
			now := time.Now()
			if err != nil {
				needKey = true
				p.mu.Lock()
				p.rep.DecodeErrors++
				p.mu.Unlock()
				pli()
				continue
			}
			needKey = false
			n, t, ok := scene.ReadStamp(img)
			lat := now.Sub(t)
			p.frame(img, now, lat, ok)
			if p.o.OnFrame != nil {
				p.o.OnFrame(img, n, lat, ok)
			}
		}
	}
}

// isKeyframe reads the VP8 frame tag: bit 0 of the first byte is 0 for a key frame (RFC 6386 9.1).
func isKeyframe(f []byte) bool { return len(f) > 2 && f[0]&1 == 0 }

func (p *player) frame(img *image.YCbCr, now time.Time, lat time.Duration, stamped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rep
	r.Frames++
	if r.Frames == 1 {
		r.firstAt = now
	}
	r.lastAt = now
	r.Width, r.Height = img.Rect.Dx(), img.Rect.Dy()
	if !stamped {
		return
	}
	r.FramesStamped++
	if r.FramesStamped == 1 {
		r.FirstFrame = now.Sub(p.o.Began)
	}
	if len(r.latencies) < 1<<18 {
		r.latencies = append(r.latencies, lat)
	}
}

func (p *player) report() *PlayReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := *p.rep
	r.latencies = append([]time.Duration(nil), p.rep.latencies...)
	r.LatencyP50 = percentileDur(r.latencies, 50)
	r.LatencyP99 = percentileDur(r.latencies, 99)
	r.rtts = p.pinger.all()
	r.InputRTTP50 = percentileDur(r.rtts, 50)
	if span := r.lastAt.Sub(r.firstAt); span > 0 && r.Frames > 1 {
		r.Duration = span
		r.FPS = float64(r.Frames-1) / span.Seconds()
		r.BitrateKbps = float64(r.bytes) * 8 / 1000 / span.Seconds()
	}
	return &r
}

// inputLoop pings the container and, if asked, moves a pointer in a circle.
func (p *player) inputLoop(ctx context.Context, dc *webrtc.DataChannel) {
	ping := time.NewTicker(p.o.PingInterval)
	defer ping.Stop()
	var move <-chan time.Time
	if p.o.Pointer {
		t := time.NewTicker(time.Second / 60)
		defer t.Stop()
		move = t.C
	}
	began := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-ping.C:
			if err := p.pinger.ping(dc); err != nil {
				return
			}
		case now := <-move:
			if err := sendPointer(dc, now.Sub(began)); err != nil {
				return
			}
		}
	}
}

// watchAddrs signals when the set of this host's interface addresses changes, polling every
// interval: a consumer that moves between networks restarts ICE instead of waiting for the old
// path to time out.
func watchAddrs(ctx context.Context, interval time.Duration) <-chan struct{} {
	out := make(chan struct{}, 1)
	snapshot := func() string {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return ""
		}
		s := make([]string, 0, len(addrs))
		for _, a := range addrs {
			s = append(s, a.String())
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	go func() {
		last := snapshot()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if cur := snapshot(); cur != last {
					last = cur
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return out
}

// Merge folds o, a later stream of the same consumer (a reconnect, or a new container after the
// old one died), into r: counts and samples add up, the first frame stays the first one, and the
// path and size are the latest.
func (r *PlayReport) Merge(o *PlayReport) {
	if o == nil {
		return
	}
	if r.FramesStamped == 0 {
		r.FirstFrame = o.FirstFrame
	}
	r.Frames += o.Frames
	r.FramesStamped += o.FramesStamped
	r.FramesLost += o.FramesLost
	r.DecodeErrors += o.DecodeErrors
	r.PLIs += o.PLIs
	r.Restarts += o.Restarts
	r.latencies = append(r.latencies, o.latencies...)
	r.rtts = append(r.rtts, o.rtts...)
	r.bytes += o.bytes
	r.Duration += o.Duration
	if o.Frames > 0 {
		r.Relay, r.Width, r.Height = o.Relay, o.Width, o.Height
	}
	r.LatencyP50 = percentileDur(r.latencies, 50)
	r.LatencyP99 = percentileDur(r.latencies, 99)
	r.InputRTTP50 = percentileDur(r.rtts, 50)
	if s := r.Duration.Seconds(); s > 0 {
		r.FPS = float64(r.Frames) / s
		r.BitrateKbps = float64(r.bytes) * 8 / 1000 / s
	}
}
