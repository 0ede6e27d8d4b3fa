package netnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func requireNetns(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
}

// The topology's promise: a and b reach r's relay address, and nothing reaches across.
func TestTopology(t *testing.T) {
	requireNetns(t)
	n := Setup(t)

	t.Run("routes", func(t *testing.T) {
		for _, c := range []struct {
			ns  string
			dst netip.Addr
			ok  bool
		}{
			{A, n.RelayIP, true}, {B, n.RelayIP, true},
			{A, n.RAddrA, true}, {B, n.RAddrB, true},
			{A, n.BIP, false}, {B, n.AIP, false},
			{A, n.RAddrB, false}, {B, n.RAddrA, false},
		} {
			out, err := n.Run(c.ns, "ip", "route", "get", c.dst.String())
			if (err == nil) != c.ok {
				t.Errorf("in %s, route to %v: %q, %v; want reachable=%v", c.ns, c.dst, out, err, c.ok)
			}
		}
	})

	t.Run("r does not forward", func(t *testing.T) {
		out, err := n.Run(R, "cat", "/proc/sys/net/ipv4/ip_forward")
		if err != nil || strings.TrimSpace(out) != "0" {
			t.Fatalf("ip_forward in r = %q, %v", out, err)
		}
	})

	t.Run("udp", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), parentTimeout)
		defer cancel()
		// r's echo listens on all its addresses and the probes use connected sockets, which take
		// only answers from the address they sent to: r must answer from RelayIP.
		relayEcho := startChild(ctx, t, n, R, "udp-echo", "RM_ECHO_ADDR=0.0.0.0:7777")
		relayEcho.expect(ctx, "READY")
		bEcho := startChild(ctx, t, n, B, "udp-echo", "RM_ECHO_ADDR=0.0.0.0:7777")
		bEcho.expect(ctx, "READY")

		for _, c := range []struct {
			ns, dst, want string
		}{
			{A, n.RelayIP.String() + ":7777", "echoed"},
			{B, n.RelayIP.String() + ":7777", "echoed"},
			{A, n.BIP.String() + ":7777", "unreachable"},
			{A, n.RAddrB.String() + ":7777", "unreachable"},
		} {
			probe := startChild(ctx, t, n, c.ns, "udp-probe", "RM_PROBE_ADDR="+c.dst)
			if got := probe.expect(ctx, "RESULT"); !strings.HasPrefix(got, c.want) {
				t.Errorf("udp from %s to %s: %s, want %s", c.ns, c.dst, got, c.want)
			}
			probe.finish(ctx)
		}
		relayEcho.finish(ctx)
		bEcho.finish(ctx)
	})
}

// Teardown removes the namespaces and whatever was left running in them, even when the test
// that made them fails.
func TestTeardown(t *testing.T) {
	requireNetns(t)
	var names []string
	exited := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		n := Setup(t)
		names = []string{n.Name(A), n.Name(B), n.Name(R)}
		leftover := n.Cmd(B, "sleep", "600")
		if err := leftover.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { exited <- leftover.Wait() }()
	})
	for _, name := range names {
		if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after cleanup: %v", name, err)
		}
	}
	var exitErr *exec.ExitError
	if err := <-exited; !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("process left in the namespace ended with %v, want killed", err)
	}
}

func TestNameRejectsUnknownNamespace(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Name(\"x\") did not panic")
		}
	}()
	(&Net{names: map[string]string{}}).Name("x")
}

// runUDPEcho listens on $RM_ECHO_ADDR and sends every datagram back until stdin closes.
func runUDPEcho(ctx context.Context, in <-chan string, out *lineWriter) error {
	pc, err := net.ListenPacket("udp4", os.Getenv("RM_ECHO_ADDR"))
	if err != nil {
		return err
	}
	defer func() { _ = pc.Close() }()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	out.send("READY", pc.LocalAddr().String())
	return waitClosed(ctx, in)
}

// runUDPProbe sends a datagram to $RM_PROBE_ADDR and reports "echoed", or "unreachable" when the
// kernel has no route (a synchronous error: no waiting involved).
func runUDPProbe(ctx context.Context, in <-chan string, out *lineWriter) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", os.Getenv("RM_PROBE_ADDR"))
	if errors.Is(err, syscall.ENETUNREACH) {
		out.send("RESULT", "unreachable: "+err.Error())
		return waitClosed(ctx, in)
	}
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("probe")); err != nil {
		out.send("RESULT", "write failed: "+err.Error())
		return waitClosed(ctx, in)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	switch {
	case err != nil:
		out.send("RESULT", "no echo: "+err.Error())
	case string(buf[:n]) != "probe":
		out.send("RESULT", "wrong echo: "+string(buf[:n]))
	default:
		out.send("RESULT", "echoed")
	}
	return waitClosed(ctx, in)
}
