package node

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/render/scene"
)

// RenderConfig configures the container's render path.
type RenderConfig struct {
	// Width, Height and FPS are the largest stream the container sends and its frame rate.
	Width  int `toml:"width"`
	Height int `toml:"height"`
	FPS    int `toml:"fps"`
	// MaxBitrateKbps caps the encoder; the congestion controller moves it below.
	MaxBitrateKbps int `toml:"max_bitrate_kbps"`
	// PublicIPs are advertised as the container's host candidates (a container behind a 1:1 NAT).
	PublicIPs []string `toml:"public_ips"`
	// UDPPortMin and UDPPortMax bound the ports WebRTC uses (open them in the firewall); 0: any.
	UDPPortMin uint16 `toml:"udp_port_min"`
	UDPPortMax uint16 `toml:"udp_port_max"`
	// Source is the command of a real application writing raw I420 frames of Width x Height to
	// stdout (e.g. ffmpeg capturing an X display); empty: the built-in scene.
	Source []string `toml:"source"`
	// Loopback admits loopback ICE candidates: one-machine devnets and tests.
	Loopback bool `toml:"loopback"`
	// ROI encodes the area around the consumer's pointer at a higher quality.
	ROI bool `toml:"roi"`
}

func (rc *RenderConfig) validate() error {
	switch {
	case rc.Width < 16 || rc.Height < 16 || rc.Width%2 != 0 || rc.Height%2 != 0 || rc.Width > 3840 || rc.Height > 2160:
		return fmt.Errorf("%w: render: width and height must be even, from 16x16 to 3840x2160 (got %dx%d)", ErrConfig, rc.Width, rc.Height)
	case rc.FPS < 1 || rc.FPS > 120:
		return fmt.Errorf("%w: render: fps must be 1 to 120 (got %d)", ErrConfig, rc.FPS)
	case rc.MaxBitrateKbps < 200:
		return fmt.Errorf("%w: render: max_bitrate_kbps must be at least 200", ErrConfig)
	case rc.UDPPortMin > rc.UDPPortMax:
		return fmt.Errorf("%w: render: udp_port_min must not exceed udp_port_max", ErrConfig)
	}
	return nil
}

// renders tracks the container's live render streams by session, so that the end of a session
// ends its stream and a consumer that reconnects replaces its old one.
type renders struct {
	mu     sync.Mutex
	next   uint64
	active map[string]liveRender
}

type liveRender struct {
	id     uint64
	cancel context.CancelFunc
	reset  func() // breaks the signalling stream (tests: a broken connection)
}

func (r *renders) start(ctx context.Context, session []byte, reset func()) (context.Context, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active == nil {
		r.active = make(map[string]liveRender)
	}
	if old, ok := r.active[string(session)]; ok {
		old.cancel() // a reconnect replaces the old stream
	}
	ctx, cancel := context.WithCancel(ctx)
	r.next++
	me := liveRender{id: r.next, cancel: cancel, reset: reset}
	r.active[string(session)] = me
	return ctx, func() {
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		if cur, ok := r.active[string(session)]; ok && cur.id == me.id { // a reconnect may have replaced it
			delete(r.active, string(session))
		}
	}
}

// breakStream resets the session's signalling stream, as a failed connection would.
func (r *renders) breakStream(session []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.active[string(session)]
	if ok && c.reset != nil {
		c.reset()
	}
	return ok
}

// stop ends the session's stream, if any.
func (r *renders) stop(session []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.active[string(session)]; ok {
		c.cancel()
		delete(r.active, string(session))
	}
}

// renderOfferTimeout bounds how long a consumer may take to send its offer.
const renderOfferTimeout = 10 * time.Second

// serveRender streams to a consumer that presents the ticket of the session it has arrived for.
func (n *Node) serveRender(ctx context.Context, s network.Stream) error {
	remote := s.Conn().RemotePeer()
	defer n.net.Hold(s)()
	_ = s.SetReadDeadline(time.Now().Add(renderOfferTimeout))
	first := &pb.RenderSignal{}
	if err := p2p.ReadMsg(s, first, p2p.MaxRenderSignalSize); err != nil {
		return err
	}
	_ = s.SetReadDeadline(time.Time{})
	sig := streamSignaller{s}
	offer := first.GetOffer()
	var key []byte
	if len(offer.GetTicket()) == 0 && len(offer.GetChallenge()) > 0 {
		release, err := n.authoriseCheck(remote)
		if err != nil {
			n.opts.Metrics.RenderSessions.WithLabelValues("refused").Inc()
			n.log.Debug("check refused", "checker", remote, "err", err)
			return sig.Send(&pb.RenderSignal{Refused: err.Error()})
		}
		defer release()
		key = append([]byte("check\x00"), offer.GetChallenge()...)
	} else {
		tk, err := n.authoriseRender(remote, offer)
		if err != nil {
			n.opts.Metrics.RenderSessions.WithLabelValues("refused").Inc()
			n.log.Debug("render refused", "consumer", remote, "err", err)
			return sig.Send(&pb.RenderSignal{Refused: err.Error()})
		}
		key = tk.SessionId
	}
	ctx, done := n.renders.start(ctx, key, func() { _ = s.Reset() })
	defer done()
	o := n.streamOptions(len(offer.GetChallenge()) == 0)
	if n.opts.Cheat != CheatNone {
		cheatStream(ctx, n.opts.Cheat, offer, &o)
	}
	began := time.Now()
	rep, err := render.Serve(ctx, sig, offer, o)
	result := "ok"
	if err != nil {
		result = "failed"
	}
	n.opts.Metrics.RenderSessions.WithLabelValues(result).Inc()
	if rep != nil {
		n.log.Info("render session ended", "consumer", remote, "frames", rep.Frames, "relay", rep.Relay,
			"plis", rep.PLIs, "resizes", rep.Resizes, "took", time.Since(began).Round(time.Millisecond), "err", err)
	}
	if ctx.Err() != nil {
		return nil // the session ended, or a reconnect replaced this stream
	}
	return err
}

// authoriseRender admits an offer whose ticket names this container and the remote peer as the
// consumer of the session that is live now.
func (n *Node) authoriseRender(remote peer.ID, offer *pb.RenderOffer) (*pb.SessionTicket, error) {
	if offer == nil {
		return nil, fmt.Errorf("the first message must be an offer")
	}
	tk, _, err := p2p.OpenSessionTicket(offer.GetTicket())
	switch {
	case err != nil:
		return nil, fmt.Errorf("ticket: %v", err)
	case !bytes.Equal(tk.GetContainer(), []byte(n.net.ID())):
		return nil, fmt.Errorf("the ticket names another container")
	case !bytes.Equal(tk.GetConsumer(), []byte(remote)):
		return nil, fmt.Errorf("the ticket names another consumer")
	}
	for _, s := range n.cont.Sessions() {
		if bytes.Equal(s.ID, tk.GetSessionId()) && s.Consumer == string(remote) {
			return tk, nil
		}
	}
	return nil, fmt.Errorf("no live session %x: open the session first", tk.GetSessionId())
}

// authoriseCheck admits a checker's challenge session: the remote peer must hold a checker
// licence in the current epoch and be one of the first MaxPerContainer checkers the epoch's seed
// assigns to this container (or the previous epoch's, during its grace): a licensed checker cannot
// drain the encoders of containers it was not assigned. The container serves at most
// maxCheckStreams at once (beyond, it answers "busy", which the checker does not count against it).
func (n *Node) authoriseCheck(remote peer.ID) (release func(), err error) {
	if n.chk == nil {
		return nil, fmt.Errorf("this container follows no elections: it cannot tell checkers")
	}
	if err := n.chk.elig.mayChallenge(string(n.net.ID()), remote, n.opts.Clock.Now()); err != nil {
		return nil, fmt.Errorf("a challenge without a ticket: %w", err)
	}
	if n.cheatsBusy() {
		return nil, fmt.Errorf("%s: serving %d checks already", refusedBusy, maxCheckStreams)
	}
	select {
	case n.chk.checkStreams <- struct{}{}:
		return func() { <-n.chk.checkStreams }, nil
	default:
		return nil, fmt.Errorf("%s: serving %d checks already", refusedBusy, maxCheckStreams)
	}
}

// streamOptions builds the stream's options; withSource starts the configured application source
// (a checker's challenge session renders the built-in scene instead).
func (n *Node) streamOptions(withSource bool) render.StreamOptions {
	rc := n.cfg.Render
	o := render.StreamOptions{
		PeerOptions: render.PeerOptions{
			NAT1To1IPs: rc.PublicIPs, PortMin: rc.UDPPortMin, PortMax: rc.UDPPortMax, Loopback: rc.Loopback,
		},
		Width: rc.Width, Height: rc.Height, FPS: rc.FPS, ROI: rc.ROI,
		Bitrates: render.Bitrates{MaxKbps: rc.MaxBitrateKbps, StartKbps: min(2500, rc.MaxBitrateKbps)},
		Log:      n.log.With("subsystem", "render"),
	}
	if len(rc.Source) > 0 && withSource {
		src, err := scene.NewCommandSource(n.ctx, rc.Source, rc.Width, rc.Height)
		if err != nil {
			n.log.Warn("render source failed; streaming the built-in scene", "err", err)
		} else {
			o.Source = src
		}
	}
	return o
}

// streamSignaller carries render signalling over a libp2p stream.
type streamSignaller struct{ s network.Stream }

func (c streamSignaller) Send(m *pb.RenderSignal) error { return p2p.WriteMsg(c.s, m) }
func (c streamSignaller) Recv() (*pb.RenderSignal, error) {
	m := &pb.RenderSignal{}
	return m, p2p.ReadMsg(c.s, m, p2p.MaxRenderSignalSize)
}

// RenderOptions configure the consumer's render session (Connect with a hold).
type RenderOptions struct {
	// Play streams the session; false: a session is the reserved container plus receipts.
	Play      bool
	RelayOnly bool
	Width     int
	Height    int
	FPS       int
	Pointer   bool
	Loopback  bool
	// onFrame, when set, sees every decoded frame (the session statistics sampler).
	onFrame func(img *image.YCbCr, frame uint32, latency time.Duration, ok bool)
}

// playRender opens the render stream to the matched container and plays it until ctx ends.
func playRender(ctx context.Context, net *p2p.Net, tk *pb.SessionTicket, ticketRaw []byte, ice []*pb.IceServer, began time.Time, ro RenderOptions) (*render.PlayReport, error) {
	container := peer.ID(tk.Container)
	s, err := net.NewStream(ctx, container, p2p.ProtoRender)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer net.Hold(s)()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	o := render.PlayOptions{
		PeerOptions: render.PeerOptions{ICEServers: ice, RelayOnly: ro.RelayOnly, Loopback: ro.Loopback},
		Ticket:      ticketRaw, Width: ro.Width, Height: ro.Height, FPS: ro.FPS, Began: began, Pointer: ro.Pointer,
		WatchNetwork: 2 * time.Second, // a new address (another network) restarts ICE at once
		OnFrame:      ro.onFrame,
	}
	return render.Play(ctx, streamSignaller{s}, o)
}
