// Package coturntest runs coturn, the reference TURN server (Debian's coturn package), for tests:
// a throwaway instance on loopback with the flags an operator's coturn needs to accept
// rendermesh's TURN REST credentials (use-auth-secret with a static-auth-secret).
package coturntest

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

// Binary is where Debian's coturn package installs the TURN server.
const Binary = "/usr/bin/turnserver"

// Realm is the realm the instance serves (rendermesh's relays use the same).
const Realm = "rendermesh"

// Available reports why coturn cannot run here, if it cannot.
func Available() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("coturn absent (apt-get install coturn, or make deps): %w", err)
	}
	return nil
}

// Flags are the flags an operator's coturn needs to accept rendermesh credentials, plus what a
// throwaway instance needs (loopback, its own pid file and database, logs on stdout).
func Flags(port, minPort, maxPort int, secret, dir string) []string {
	return []string{
		"-n", // no config file
		"--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-rfc5780",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
		"--listening-port=" + strconv.Itoa(port),
		"--min-port=" + strconv.Itoa(minPort), "--max-port=" + strconv.Itoa(maxPort),
		"--use-auth-secret", "--static-auth-secret=" + secret,
		"--realm=" + Realm,
		"--allow-loopback-peers", // both peers' candidates are on loopback
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"--db=" + filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log",
	}
}

// Start runs coturn on a free loopback port until the test ends and returns its address
// ("127.0.0.1:port") once it answers STUN.
func Start(t testing.TB, secret string) string {
	t.Helper()
	port := freeUDPRange(t, 1)
	minPort := freeUDPRange(t, 16)
	out := &lockedBuffer{}
	cmd := exec.Command(Binary, Flags(port, minPort, minPort+15, secret, t.TempDir())...)
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
func freeUDPRange(t testing.TB, n int) int {
	t.Helper()
	for range 100 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := pc.LocalAddr().(*net.UDPAddr).Port
		_ = pc.Close()
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
