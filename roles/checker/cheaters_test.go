package checker

import (
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/render/rendertest"
	"github.com/rendermesh/rendermesh/render/scene"
)

// Real render sessions, in-process over loopback: render.Serve as the container (honest, or
// changed to cheat) and render.Play as the checker's consumer, whose frames a Verifier judges.
// The sessions run on the wall clock (real sockets, a real encoder); the Verifier itself reads
// none: the test hands it the arrival times.

// container is how a container serves a checker's offer: it may change the offer (a cheater drops
// the challenge, or the frame rate) and says what to stream. stop is closed when the checker's
// session is over.
type containerFunc func(offer *pb.RenderOffer, stop <-chan struct{}) render.StreamOptions

const (
	sessionW, sessionH, sessionFPS = 320, 180, 30
	sessionHold                    = 2500 * time.Millisecond
)

func honestContainer(*pb.RenderOffer, <-chan struct{}) render.StreamOptions {
	return render.StreamOptions{PeerOptions: render.PeerOptions{Loopback: true}, Width: 1280, Height: 720, FPS: 30}
}

// session is one checked session: what the checker concluded, what its player measured, and
// every decoded frame with its arrival time.
type session struct {
	challenge Challenge
	result    Result
	play      *render.PlayReport
	frames    []Frame
}

// check runs a simulation test against serve for sessionHold.
func check(t *testing.T, seed uint64, serve containerFunc) session {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{byte(seed), 'c', 'h', 'e', 'c', 'k'})
	c, err := NewChallenge(rng, time.Now(), sessionW, sessionH, sessionFPS)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(c, VerifierConfig{Rand: rand.NewPCG(seed, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var frames []Frame
	po := render.PlayOptions{
		PeerOptions: render.PeerOptions{Loopback: true},
		Width:       c.Width, Height: c.Height, FPS: c.FPS, Challenge: c.Nonce,
		OnFrame: func(img *image.YCbCr, _ uint32, _ time.Duration, _ bool) {
			f := ReadFrame(img, time.Now())
			v.Observe(f)
			mu.Lock()
			frames = append(frames, f)
			mu.Unlock()
		},
	}

	cons, cont := rendertest.NewPipe()
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), sessionHold+20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		first, err := cont.Recv()
		if err != nil {
			served <- err
			return
		}
		offer := first.GetOffer()
		so := serve(offer, stop)
		_, err = render.Serve(ctx, cont, offer, so)
		served <- err
	}()
	pctx, pcancel := context.WithTimeout(ctx, sessionHold)
	defer pcancel()
	prep, perr := render.Play(pctx, cons, po)
	end := time.Now()
	close(stop)
	if perr != nil {
		t.Fatalf("play: %v", perr)
	}
	if err := <-served; err != nil {
		t.Logf("serve: %v", err) // a cheater's stream may end badly; the verdict is what counts
	}
	r := v.Finish(end, StreamStats{BitrateKbps: prep.BitrateKbps, RTT: prep.InputRTTP50})
	m := r.Measurements
	t.Logf("%v %s %s", r.Verdict, r.Check, r.Reason)
	t.Logf("frames %d (stamped %d), %.1f fps, %dx%d, latency p50 %v (bound %v, rtt %v), max gap %v, %.0f kbit/s, compared %d (matched %d), PSNR min %.1f median %.1f",
		m.Frames, m.FramesStamped, m.FPS, m.Width, m.Height, m.LatencyP50, m.LatencyBound, prep.InputRTTP50, m.MaxGap.Round(time.Millisecond),
		m.BitrateKbps, m.FramesChecked, m.FramesMatched, m.PSNRMin, m.PSNRMedian)
	mu.Lock()
	defer mu.Unlock()
	return session{challenge: c, result: r, play: prep, frames: frames}
}

// sceneSource is a cheater's own renderer: the scene for seed (the challenge's nonce, which it
// did read), frame k of its own count given by content(k), and after stallAfter frames nothing
// until stop (0: never stalls). The sender stamps what it returns with its own frame number and
// the time.
type sceneSource struct {
	scene      *scene.Scene
	content    func(k uint32) uint32
	k          uint32
	stallAfter uint32
	stop       <-chan struct{}
}

func newSceneSource(seed []byte, content func(uint32) uint32, stallAfter uint32, stop <-chan struct{}) *sceneSource {
	return &sceneSource{scene: scene.New(sessionW, sessionH, seed), content: content, stallAfter: stallAfter, stop: stop}
}

func (s *sceneSource) Size() (int, int) { return sessionW, sessionH }

func (s *sceneSource) Next(dst *image.YCbCr) error {
	s.k++
	if s.stallAfter > 0 && s.k > s.stallAfter {
		<-s.stop
		return errors.New("stalled source stopped")
	}
	s.scene.RenderContent(dst, s.content(s.k))
	return nil
}

func (s *sceneSource) Close() error { return nil }

// TestCheatersFail runs an honest container and one of each kind of cheater through a real
// session; the honest one passes, every cheater fails on the check its cheat breaks.
func TestCheatersFail(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC sessions over loopback")
	}
	var recording session
	t.Run("honest", func(t *testing.T) {
		s := check(t, 1, honestContainer)
		recording = s
		if s.result.Verdict != Pass {
			t.Fatalf("an honest container failed: %s: %s", s.result.Check, s.result.Reason)
		}
		if m := s.result.Measurements; m.FramesChecked < DefaultMinSamples || m.FramesMatched != m.FramesChecked {
			t.Errorf("compared %d frames, %d matched", m.FramesChecked, m.FramesMatched)
		}
	})

	cheaters := []struct {
		name  string
		serve containerFunc
		want  Check
	}{
		{
			// It renders the built-in scene, but with its own fixed seed: frames made before
			// the challenge existed would do.
			name: "ignores the challenge",
			serve: func(o *pb.RenderOffer, _ <-chan struct{}) render.StreamOptions {
				o.Challenge = nil
				so := honestContainer(o, nil)
				so.Seed = []byte("pre-rendered")
				return so
			},
			want: CheckContent,
		},
		{
			// It reads the nonce and renders ten frames, then plays them over and over: the
			// sender stamps them afresh, but frame n's stamp sits on another frame's picture.
			name: "replays its first frames under fresh stamps",
			serve: func(o *pb.RenderOffer, _ <-chan struct{}) render.StreamOptions {
				nonce := o.Challenge
				o.Challenge = nil
				so := honestContainer(o, nil)
				so.Source = newSceneSource(nonce, func(k uint32) uint32 { return (k-1)%10 + 1 }, 0, nil)
				return so
			},
			want: CheckContent,
		},
		{
			// It advertises the frame rate asked for and streams half of it.
			name: "half the frame rate",
			serve: func(o *pb.RenderOffer, _ <-chan struct{}) render.StreamOptions {
				o.Fps /= 2
				return honestContainer(o, nil)
			},
			want: CheckFrameRate,
		},
		{
			// It cannot do the size asked for and streams what it can.
			name: "a lower resolution",
			serve: func(o *pb.RenderOffer, _ <-chan struct{}) render.StreamOptions {
				so := honestContainer(o, nil)
				so.Width, so.Height = 256, 144
				return so
			},
			want: CheckResolution,
		},
		{
			// It renders the right scene for a third of a second, then nothing (the renderer crashed, or
			// the GPU went to someone else) while the connection stays up.
			name: "goes silent",
			serve: func(o *pb.RenderOffer, stop <-chan struct{}) render.StreamOptions {
				nonce := o.Challenge
				o.Challenge = nil
				so := honestContainer(o, nil)
				so.Source = newSceneSource(nonce, func(k uint32) uint32 { return k }, 10, stop)
				return so
			},
			want: CheckContinuity,
		},
	}
	for i, c := range cheaters {
		t.Run(c.name, func(t *testing.T) {
			s := check(t, uint64(10+i), c.serve)
			if s.result.Verdict != Fail || s.result.Check != c.want {
				t.Fatalf("verdict %v on %q (%s), want fail on %q", s.result.Verdict, s.result.Check, s.result.Reason, c.want)
			}
		})
	}

	// It kept the stream of an earlier check (the honest session above) and plays it back to a
	// new checker as it arrived, old stamps and all: its timing is perfect, its stamps are
	// older than the new challenge and its pictures are another nonce's scene.
	t.Run("replays a recorded session", func(t *testing.T) {
		if len(recording.frames) == 0 {
			t.Skip("no honest session recorded")
		}
		later := recording.challenge
		later.Nonce = nonce("a later check")
		later.Issued = time.Now()
		v, err := NewVerifier(later, VerifierConfig{Rand: rand.NewPCG(99, 1)})
		if err != nil {
			t.Fatal(err)
		}
		shift := later.Issued.Sub(recording.challenge.Issued)
		var end time.Time
		for _, f := range recording.frames {
			f.Arrived = f.Arrived.Add(shift)
			end = f.Arrived
			v.Observe(f)
		}
		r := v.Finish(end, StreamStats{BitrateKbps: recording.play.BitrateKbps, RTT: recording.play.InputRTTP50})
		t.Logf("%v %s %s", r.Verdict, r.Check, r.Reason)
		if r.Verdict != Fail || r.Check != CheckFreshness {
			t.Fatalf("verdict %v on %q, want fail on freshness", r.Verdict, r.Check)
		}
	})
}
