package render

import (
	"context"
	"image"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/rendertest"
	"github.com/rendermesh/rendermesh/render/turn"
)

// session runs a container and a consumer against each other for hold and returns both reports.
func session(t testing.TB, hold time.Duration, so StreamOptions, po PlayOptions) (*StreamReport, error, *PlayReport, error) {
	t.Helper()
	cons, cont := rendertest.NewPipe()
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hold+20*time.Second)
	defer cancel()
	type served struct {
		rep *StreamReport
		err error
	}
	done := make(chan served, 1)
	go func() {
		first, err := cont.Recv()
		if err != nil {
			done <- served{nil, err}
			return
		}
		rep, err := Serve(ctx, cont, first.GetOffer(), so)
		done <- served{rep, err}
	}()
	pctx, pcancel := context.WithTimeout(ctx, hold)
	defer pcancel()
	prep, perr := Play(pctx, cons, po)
	s := <-done
	return s.rep, s.err, prep, perr
}

func TestStreamLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC over loopback")
	}
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 640, Height: 360, FPS: 30, Threads: 1}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true}, Pointer: true, PingInterval: 100 * time.Millisecond}
	srep, serr, prep, perr := session(t, 4*time.Second, so, po)
	if perr != nil {
		t.Fatalf("play: %v", perr)
	}
	if serr != nil {
		t.Fatalf("serve: %v", serr)
	}
	t.Logf("container: %+v", *srep)
	t.Logf("consumer: frames %d stamped %d lost %d, first frame %v, latency p50 %v p99 %v, %.1f fps, %.0f kbit/s, input rtt %v, %dx%d",
		prep.Frames, prep.FramesStamped, prep.FramesLost, prep.FirstFrame, prep.LatencyP50, prep.LatencyP99, prep.FPS, prep.BitrateKbps, prep.InputRTTP50, prep.Width, prep.Height)
	if prep.FramesStamped == 0 || prep.FirstFrame <= 0 {
		t.Fatalf("no stamped frame decoded: %+v", prep)
	}
	if prep.Width != 640 || prep.Height != 360 {
		t.Errorf("decoded %dx%d, want the 640x360 the consumer asked for", prep.Width, prep.Height)
	}
	if srep.Keyframes == 0 || srep.Frames < prep.Frames {
		t.Errorf("container sent %d frames (%d keyframes), consumer decoded %d", srep.Frames, srep.Keyframes, prep.Frames)
	}
	if srep.InputEvents == 0 {
		t.Error("the container saw no input events from the consumer's pointer")
	}
	if prep.InputRTTP50 <= 0 {
		t.Error("no input round trip measured")
	}
	if prep.Relay || srep.Relay {
		t.Error("a loopback session went through a relay")
	}
}

func TestRefusedOffer(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC")
	}
	cons, cont := rendertest.NewPipe()
	defer cons.Close()
	go func() {
		if _, err := cont.Recv(); err == nil {
			_ = cont.Send(&pb.RenderSignal{Refused: "no live session"})
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Play(ctx, cons, PlayOptions{PeerOptions: PeerOptions{Loopback: true}})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("play of a refused offer: %v (ctx %v); want ErrRefused at once", err, ctx.Err())
	}
}

func TestBadOfferIsRefused(t *testing.T) {
	cons, cont := rendertest.NewPipe()
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Serve(ctx, cont, &pb.RenderOffer{Sdp: "not sdp"}, StreamOptions{})
	if err == nil {
		t.Fatal("a garbage offer was answered")
	}
	m, rerr := cons.Recv()
	if rerr != nil || m.GetRefused() == "" {
		t.Fatalf("consumer got %v, %v; want a refusal", m, rerr)
	}
}

func TestLadder(t *testing.T) {
	top := startRung(1280, 720)
	if ladder[top].w != 1280 {
		t.Fatalf("start rung for 720p is %dx%d", ladder[top].w, ladder[top].h)
	}
	if got := pickRung(top, 500, 1280, 720); got != top+1 {
		t.Errorf("500 kbit/s at 720p: rung %d, want one down", got)
	}
	if got := pickRung(top+2, 5000, 1280, 720); got != top+1 {
		t.Errorf("5 Mbit/s at 360p: rung %d, want one up", got)
	}
	if got := pickRung(top, 50000, 1280, 720); got != top {
		t.Errorf("never above the wanted size: rung %d", got)
	}
	if w, h := ladderSize(startRung(1000, 600), 1000, 600); w != 1000 || h != 600 {
		t.Errorf("an odd wanted size is kept at the top: %dx%d", w, h)
	}
}

// relayServer runs an embedded TURN relay on loopback and returns ICE servers with fresh
// credentials for it.
func relayServer(t testing.TB) []*pb.IceServer {
	t.Helper()
	secret := []byte("render test secret")
	srv, err := turn.Listen(turn.Config{ListenUDP: "127.0.0.1:0", RelayIP: net.ParseIP("127.0.0.1"), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	s := turn.ForSession(srv.URLs(""), secret, "render-test", time.Hour, time.Now())
	return []*pb.IceServer{{Urls: s.URLs, Username: s.Username, Credential: s.Credential}}
}

func TestStreamThroughRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC through a TURN relay on loopback")
	}
	ice := relayServer(t)
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 320, Height: 180, FPS: 30, Threads: 1}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true, RelayOnly: true, ICEServers: ice}}
	srep, serr, prep, perr := session(t, 3*time.Second, so, po)
	if perr != nil || serr != nil {
		t.Fatalf("play: %v; serve: %v", perr, serr)
	}
	t.Logf("relayed: first frame %v, latency p50 %v, frames %d", prep.FirstFrame, prep.LatencyP50, prep.FramesStamped)
	if prep.FramesStamped == 0 {
		t.Fatal("no frame through the relay")
	}
	if !prep.Relay || !srep.Relay {
		t.Errorf("relay-only session: consumer relay %v, container relay %v; want both true", prep.Relay, srep.Relay)
	}
}

// An ICE restart mid-session (as on a network change) keeps the stream going on new credentials.
func TestICERestart(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC over loopback")
	}
	restart := make(chan struct{})
	var mu sync.Mutex
	var before, after int
	restarted := false
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true}, Restart: restart,
		OnFrame: func(_ *image.YCbCr, _ uint32, _ time.Duration, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			if !ok {
				return
			}
			if restarted {
				after++
			} else {
				before++
			}
		}}
	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 320, Height: 180, FPS: 30, Threads: 1}
	go func() {
		time.Sleep(1500 * time.Millisecond) // the stream runs on the wall clock: real sockets
		mu.Lock()
		restarted = true
		mu.Unlock()
		restart <- struct{}{}
	}()
	srep, serr, prep, perr := session(t, 4*time.Second, so, po)
	if perr != nil || serr != nil {
		t.Fatalf("play: %v; serve: %v", perr, serr)
	}
	mu.Lock()
	defer mu.Unlock()
	if prep.Restarts != 1 || srep.Restarts != 1 {
		t.Errorf("restarts: consumer %d, container %d; want 1 each", prep.Restarts, srep.Restarts)
	}
	if before == 0 || after == 0 {
		t.Errorf("frames before the restart %d, after %d; want both", before, after)
	}
}

func TestOversizeChallengeIsRefused(t *testing.T) {
	cons, cont := rendertest.NewPipe()
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Serve(ctx, cont, &pb.RenderOffer{Challenge: make([]byte, MaxChallenge+1)}, StreamOptions{})
	if err == nil {
		t.Fatal("a 65-byte challenge was accepted")
	}
	if m, rerr := cons.Recv(); rerr != nil || m.GetRefused() == "" {
		t.Fatalf("consumer got %v, %v; want a refusal", m, rerr)
	}
}

// TestRelayWatchWhileDescriptionApplies reads whether a session is relayed while a remote
// description is being applied, as Play and Stream do when a session ends with an answer still in
// flight: the race detector flagged pion's GetSelectedCandidatePair there (it reads the ICE
// transport's gatherer without the lock under which the description starts the transports).
func TestRelayWatchWhileDescriptionApplies(t *testing.T) {
	api, err := newAPI(PeerOptions{Loopback: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	offerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	if _, err := offerer.CreateDataChannel(InputChannel, nil); err != nil {
		t.Fatal(err)
	}
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		answerer, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		w := watchRelay(answerer)
		done := make(chan error, 1)
		go func() { done <- answerer.SetRemoteDescription(offer) }()
		// SetRemoteDescription returns once the description is set; pion then starts the ICE
		// transport in a goroutine of its own, and ICE moves to checking. Read throughout.
		for applied := false; !applied || answerer.ICEConnectionState() == webrtc.ICEConnectionStateNew; {
			if w.relayed() {
				t.Error("relayed before any pair was selected")
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				applied = true
			default:
			}
			runtime.Gosched()
		}
		if err := answerer.Close(); err != nil {
			t.Error(err)
		}
	}
}
