package node

import (
	"context"
	"errors"
	"image"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/render/scene"
	"github.com/rendermesh/rendermesh/roles/container"
)

// Cheat is how a simulated cheating container (devnet, simnet) deceives its checkers. It is a test
// seam (Options.Cheat), never configuration: the network must catch each of them.
type Cheat string

// Cheats.
const (
	CheatNone Cheat = ""
	// CheatGPU advertises a better GPU than it has (an H100 on an RTX 3080): its signed telemetry
	// reads the real one.
	CheatGPU Cheat = "gpu"
	// CheatFrameRate streams half the frame rate it is asked for.
	CheatFrameRate Cheat = "fps"
	// CheatReplay reads the challenge, renders its first ten frames and plays them over and over
	// under fresh stamps; its telemetry is one reading replayed.
	CheatReplay Cheat = "replay"
	// CheatSilent goes silent mid-session: ten frames, then nothing while the connection stays up;
	// it leaves telemetry requests unanswered.
	CheatSilent Cheat = "silent"
	// CheatStall answers telemetry honestly, but a second into every render session, a
	// consumer's as a checker's, it goes silent: nothing more while the connection stays up. A
	// registration check by telemetry alone lets it through; a challenge, or its consumers'
	// session statistics, catch it.
	CheatStall Cheat = "stall"
	// CheatBusy passes its registration check, then, in standby, answers every check "busy", as
	// a container that serves as many checks as it can does: it dodges its random checks unless
	// refusals are counted.
	CheatBusy Cheat = "busy"
)

// cheatsBusy says whether a container cheating with c refuses a check now, as busy.
func (n *Node) cheatsBusy() bool {
	return n.opts.Cheat == CheatBusy && n.cont != nil && n.cont.State() == pb.ContainerState_CONTAINER_STATE_STANDBY
}

// cheatStall bounds how long a silent cheater's source stays silent before it fails.
const cheatStall = 20 * time.Second

// Cheats lists every kind of cheater, in the order devnet and simnet deal them out.
var Cheats = []Cheat{CheatGPU, CheatFrameRate, CheatReplay, CheatSilent}

// cheatProbe is the probe of a container cheating with c on top of its real one: CheatGPU claims
// an H100.
func cheatProbe(c Cheat, real container.Probe) container.Probe {
	if c != CheatGPU {
		return real
	}
	h100, _ := container.ProfileByName("h100")
	return container.NewClaimingProbe(container.NewSimulatedProbe(h100, 1), real)
}

// cheatStream changes what a cheating container streams for an offer.
func cheatStream(ctx context.Context, c Cheat, offer *pb.RenderOffer, o *render.StreamOptions) {
	switch c {
	case CheatFrameRate:
		fps := int(offer.GetFps())
		if fps == 0 {
			fps = o.FPS
		}
		offer.Fps = uint32(max(1, fps/2))
	case CheatStall:
		fps := int(offer.GetFps())
		if fps <= 0 || fps > 120 {
			fps = o.FPS
		}
		w, h := int(offer.GetWidth()), int(offer.GetHeight())
		if w < 16 || h < 16 || w > o.Width || h > o.Height || w%2 != 0 || h%2 != 0 {
			w, h = o.Width, o.Height
		}
		seed := offer.GetChallenge()
		if len(seed) > 0 {
			offer.Challenge = nil // the challenge's scene, rendered by the source below
		} else {
			seed = o.Seed
		}
		if o.Source != nil {
			_ = o.Source.Close()
		}
		o.Source = &cheatSource{ctx: ctx, scene: scene.New(w, h, seed), w: w, h: h, stop: make(chan struct{}),
			content: func(k uint32) uint32 { return k }, stallAfter: uint32(max(1, fps))}
		o.Width, o.Height = w, h
	case CheatReplay, CheatSilent:
		nonce := offer.GetChallenge()
		if len(nonce) == 0 {
			return // an ordinary session: it cheats the checkers only
		}
		offer.Challenge = nil
		w, h := int(offer.GetWidth()), int(offer.GetHeight())
		if w < 16 || h < 16 {
			w, h = o.Width, o.Height
		}
		src := &cheatSource{ctx: ctx, scene: scene.New(w, h, nonce), w: w, h: h, stop: make(chan struct{})}
		if c == CheatReplay {
			src.content = func(k uint32) uint32 { return (k-1)%10 + 1 }
		} else {
			src.content = func(k uint32) uint32 { return k }
			src.stallAfter = 10
		}
		if o.Source != nil {
			_ = o.Source.Close()
		}
		o.Source = src
		o.Width, o.Height = w, h
	}
}

// cheatSource renders the challenge's scene as a cheater does: frame k of its own count shows
// content(k), and after stallAfter frames (0: never) nothing until it is closed, the stream ends
// or cheatStall has passed (the sender calls Next synchronously: a source that never returned
// would keep the stream, and the node, from ever closing).
type cheatSource struct {
	ctx        context.Context
	scene      *scene.Scene
	w, h       int
	content    func(k uint32) uint32
	k          uint32
	stallAfter uint32
	stop       chan struct{}
	once       sync.Once
}

func (s *cheatSource) Size() (int, int) { return s.w, s.h }

func (s *cheatSource) Next(dst *image.YCbCr) error {
	s.k++
	if s.stallAfter > 0 && s.k > s.stallAfter {
		t := time.NewTimer(cheatStall)
		defer t.Stop()
		select {
		case <-s.stop:
		case <-s.ctx.Done():
		case <-t.C:
		}
		return errors.New("cheat: silent source closed")
	}
	s.scene.RenderContent(dst, s.content(s.k))
	return nil
}

func (s *cheatSource) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}
