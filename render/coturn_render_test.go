package render

import (
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/internal/coturntest"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/turn"
)

// A relay run by coturn (an operator's choice, see docs/RENDER.md "Relays") carries a whole
// render session: coturn accepts the TURN REST credentials rendermesh mints, and VP8 over
// DTLS-SRTP flows through its allocations.
func TestStreamThroughCoturn(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC through coturn on loopback")
	}
	if err := coturntest.Available(); err != nil {
		t.Skipf("coturn not tested: %v", err)
	}
	secret := "render coturn secret"
	addr := coturntest.Start(t, secret)
	username, password := turn.Credentials([]byte(secret), "render-coturn", time.Hour, time.Now())
	ice := []*pb.IceServer{{Urls: []string{"turn:" + addr + "?transport=udp"}, Username: username, Credential: password}}

	so := StreamOptions{PeerOptions: PeerOptions{Loopback: true}, Width: 320, Height: 180, FPS: 30, Threads: 1}
	po := PlayOptions{PeerOptions: PeerOptions{Loopback: true, RelayOnly: true, ICEServers: ice}}
	srep, serr, prep, perr := session(t, 3*time.Second, so, po)
	if perr != nil || serr != nil {
		t.Fatalf("play: %v; serve: %v", perr, serr)
	}
	if srep == nil {
		t.Fatal("serve returned no report")
	}
	t.Logf("through coturn: first frame %v, latency p50 %v p99 %v, frames %d stamped %d lost %d, %.1f fps, %.0f kbit/s, %dx%d",
		prep.FirstFrame, prep.LatencyP50, prep.LatencyP99, prep.Frames, prep.FramesStamped, prep.FramesLost, prep.FPS, prep.BitrateKbps, prep.Width, prep.Height)
	t.Logf("container: %+v", *srep)
	if prep.FramesStamped == 0 {
		t.Fatal("no stamped frame decoded through coturn")
	}
	if !prep.Relay || !srep.Relay {
		t.Errorf("relay-only session: consumer relay %v, container relay %v; want both true", prep.Relay, srep.Relay)
	}
}
