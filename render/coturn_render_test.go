package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/turn"
)

// coturnPath is where Debian's coturn package installs the TURN server.
const coturnPath = "/usr/bin/turnserver"

// A relay run by coturn (an operator's choice, see docs/RENDER.md "Relays") carries a whole
// render session: coturn accepts the TURN REST credentials rendermesh mints, and VP8 over
// DTLS-SRTP flows through its allocations.
func TestStreamThroughCoturn(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC through coturn on loopback")
	}
	if _, err := os.Stat(coturnPath); err != nil {
		t.Skipf("coturn not tested: %s absent (apt-get install coturn): %v", coturnPath, err)
	}
	secret := "render coturn secret"
	addr := startCoturnRelay(t, secret)
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

// startCoturnRelay runs coturn on a free loopback port until the test ends, with the flags an
// operator's coturn needs for rendermesh credentials (see render/turn/coturn_test.go), and returns
// its address once it answers STUN.
func startCoturnRelay(t *testing.T, secret string) string {
	t.Helper()
	port := coturnFreeUDPPort(t)
	minPort := coturnFreeUDPRange(t, 16)
	dir := t.TempDir()
	out := &coturnOutput{}
	cmd := exec.Command(coturnPath,
		"-n", // no config file
		"--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-rfc5780",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(port),
		"--min-port="+strconv.Itoa(minPort), "--max-port="+strconv.Itoa(minPort+15),
		"--use-auth-secret", "--static-auth-secret="+secret,
		"--realm="+turn.DefaultRealm,
		"--allow-loopback-peers", // both peers' candidates are on loopback
		"--pidfile="+filepath.Join(dir, "turnserver.pid"),
		"--db="+filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start coturn: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("coturn output:\n%s", out.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := coturnAnswers(ctx, addr, exited); err != nil {
		t.Fatalf("coturn never answered on %s: %v\n%s", addr, err, out.String())
	}
	return addr
}

// coturnAnswers sends STUN Binding requests to addr until one is answered, the process exits or
// ctx ends.
func coturnAnswers(ctx context.Context, addr string, exited <-chan struct{}) error {
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	buf := make([]byte, 1500)
	for {
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := conn.Write(req.Raw); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // nothing yet (or ICMP port unreachable): ask again
			}
			var res stun.Message
			if res.UnmarshalBinary(buf[:n]) == nil && res.TransactionID == req.TransactionID {
				return nil
			}
		}
		select {
		case <-time.After(50 * time.Millisecond): // a refused port answers at once: do not spin
		case <-ctx.Done():
		}
	}
}

// coturnFreeUDPPort is a loopback UDP port that was free a moment ago.
func coturnFreeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// coturnFreeUDPRange finds n consecutive loopback UDP ports that were free a moment ago.
func coturnFreeUDPRange(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := coturnFreeUDPPort(t)
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			_ = pc.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free UDP ports", n)
	return 0
}

// coturnOutput collects coturn's log from its stdout and stderr.
type coturnOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *coturnOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *coturnOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
