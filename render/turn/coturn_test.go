package turn

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
)

const coturnBinary = "/usr/bin/turnserver"

// coturnFlags are the flags an operator's coturn needs to accept rendermesh credentials, plus
// what a throwaway instance in a test needs (loopback, its own pid file and database, logs on
// stdout).
func coturnFlags(port, minPort, maxPort int, secret, dir string) []string {
	return []string{
		"-n", // no config file
		"--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-rfc5780",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port=" + strconv.Itoa(port),
		"--min-port=" + strconv.Itoa(minPort), "--max-port=" + strconv.Itoa(maxPort),
		"--use-auth-secret", "--static-auth-secret=" + secret,
		"--realm=" + DefaultRealm,
		"--allow-loopback-peers",
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"--db=" + filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log",
	}
}

// Operators may run coturn instead of the embedded relay: coturn must accept what Credentials
// mints, and refuse what it should.
func TestCoturnAcceptsOurCredentials(t *testing.T) {
	if _, err := os.Stat(coturnBinary); err != nil {
		t.Skipf("coturn interop not tested: %s absent (apt-get install coturn): %v", coturnBinary, err)
	}
	secret := "coturn shared secret"
	addr := startCoturn(t, secret)

	now := time.Now() // coturn has its own clock: the real one
	username, password := Credentials([]byte(secret), "alice", time.Hour, now)
	relay, err := newClient(t, addr, username, password, nil).Allocate()
	if err != nil {
		t.Fatalf("coturn refused our credentials: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	roundTrip(t, relay, "through coturn")

	refused := []struct{ name, username, password string }{
		{"wrong secret", username, restPassword([]byte("not the secret"), username)},
		{"expired", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10) + ":alice", ""},
	}
	refused[1].password = restPassword([]byte(secret), refused[1].username)
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			if _, err := newClient(t, addr, r.username, r.password, nil).Allocate(); err == nil {
				t.Fatal("coturn accepted bad credentials")
			}
		})
	}
}

// startCoturn runs coturn on a free loopback port until the test ends and returns its address
// once it answers STUN.
func startCoturn(t *testing.T, secret string) string {
	t.Helper()
	port := int(freeUDPPort(t))
	minPort := freeUDPRange(t, 16)
	dir := t.TempDir()

	out := &lockedBuffer{}
	cmd := exec.Command(coturnBinary, coturnFlags(port, minPort, minPort+15, secret, dir)...)
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
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := waitForSTUN(ctx, addr, exited); err != nil {
		t.Fatalf("coturn never answered on %s: %v\n%s", addr, err, out.String())
	}
	return addr
}

// waitForSTUN sends Binding requests to addr until one is answered, the process exits or ctx
// ends. Each attempt waits at most 200 ms for its answer.
func waitForSTUN(ctx context.Context, addr string, exited <-chan struct{}) error {
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

// freeUDPRange finds n consecutive loopback UDP ports that were free a moment ago.
func freeUDPRange(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := int(freeUDPPort(t))
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

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
