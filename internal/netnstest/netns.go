package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// The namespaces of a topology, as Cmd and Name take them.
const (
	A = "a" // consumer side
	B = "b" // container side
	R = "r" // relay, linked to both
)

// namePrefix starts every namespace name this package makes: "rmnt<pid>-<random>-<role>".
const namePrefix = "rmnt"

// ErrUnavailable is wrapped by Available's errors.
var ErrUnavailable = errors.New("netnstest: network namespaces unavailable")

// Net is one topology: see the package doc.
type Net struct {
	AIP     netip.Addr // a's address, 10.77.1.2
	BIP     netip.Addr // b's address, 10.77.2.2
	RAddrA  netip.Addr // r on a's link, 10.77.1.1
	RAddrB  netip.Addr // r on b's link, 10.77.2.1
	RelayIP netip.Addr // r's loopback address that a and b both reach, 10.77.3.1

	names map[string]string // role -> namespace name
}

// Name is the system-wide name of namespace ns (A, B or R), for ip -n and ip netns exec.
func (n *Net) Name(ns string) string {
	name, ok := n.names[ns]
	if !ok {
		panic(fmt.Sprintf("netnstest: no namespace %q: want %q, %q or %q", ns, A, B, R))
	}
	return name
}

// Cmd is an exec.Cmd that runs name with args inside namespace ns (A, B or R). The process is
// the program itself (ip netns exec replaces itself with it), so killing the Cmd kills it.
func (n *Net) Cmd(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name(ns), name}, args...)...)
}

// CommandContext is Cmd killed when ctx ends.
func (n *Net) CommandContext(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name(ns), name}, args...)...)
}

// Run runs name with args inside namespace ns and returns its combined output.
func (n *Net) Run(ns string, name string, args ...string) (string, error) {
	out, err := n.Cmd(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netnstest: in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

var available = sync.OnceValue(func() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: needs Linux, this is %s", ErrUnavailable, runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run the test as root", ErrUnavailable)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: no ip command: install iproute2: %v", ErrUnavailable, err)
	}
	name := fmt.Sprintf("%s%d-%s-probe", namePrefix, os.Getpid(), randomSuffix())
	if err := ip("netns", "add", name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := ip("netns", "del", name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
})

// Available reports whether this machine can build topologies: Linux, root, iproute2 and a
// namespace that can be created. Tests skip on its error; the answer is computed once.
func Available() error { return available() }

// Setup builds a fresh topology for t and tears it down in t.Cleanup. It fails t if the topology
// cannot be built; call Available first to skip where namespaces are not possible.
func Setup(t testing.TB) *Net {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	sweepStale()
	suffix := fmt.Sprintf("%s%d-%s-", namePrefix, os.Getpid(), randomSuffix())
	n := &Net{
		AIP:     netip.MustParseAddr("10.77.1.2"),
		BIP:     netip.MustParseAddr("10.77.2.2"),
		RAddrA:  netip.MustParseAddr("10.77.1.1"),
		RAddrB:  netip.MustParseAddr("10.77.2.1"),
		RelayIP: netip.MustParseAddr("10.77.3.1"),
		names:   map[string]string{A: suffix + A, B: suffix + B, R: suffix + R},
	}
	t.Cleanup(func() {
		if err := n.teardown(); err != nil {
			t.Errorf("netnstest teardown: %v", err)
		}
	})
	if err := n.build(); err != nil {
		t.Fatalf("netnstest setup: %v", err)
	}
	return n
}

// build runs the iproute2 commands that make the topology in the package doc.
func (n *Net) build() error {
	a, b, r := n.names[A], n.names[B], n.names[R]
	steps := [][]string{
		{"netns", "add", a},
		{"netns", "add", b},
		{"netns", "add", r},
		{"-n", a, "link", "set", "lo", "up"},
		{"-n", b, "link", "set", "lo", "up"},
		{"-n", r, "link", "set", "lo", "up"},
		// The veth pairs are made inside the namespaces, so their names are local to them.
		{"-n", a, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-a", "netns", r},
		{"-n", b, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-b", "netns", r},
		{"-n", a, "addr", "add", n.AIP.String() + "/24", "dev", "veth-r"},
		{"-n", r, "addr", "add", n.RAddrA.String() + "/24", "dev", "veth-a"},
		{"-n", b, "addr", "add", n.BIP.String() + "/24", "dev", "veth-r"},
		{"-n", r, "addr", "add", n.RAddrB.String() + "/24", "dev", "veth-b"},
		{"-n", r, "addr", "add", n.RelayIP.String() + "/32", "dev", "lo"},
		{"-n", a, "link", "set", "veth-r", "up"},
		{"-n", r, "link", "set", "veth-a", "up"},
		{"-n", b, "link", "set", "veth-r", "up"},
		{"-n", r, "link", "set", "veth-b", "up"},
		// r sends to a and b from RelayIP unless a socket is bound otherwise, like a host with one
		// public address: a server on 0.0.0.0 then answers from the address it was asked at.
		{"-n", r, "route", "replace", linkNet(n.RAddrA), "dev", "veth-a", "src", n.RelayIP.String()},
		{"-n", r, "route", "replace", linkNet(n.RAddrB), "dev", "veth-b", "src", n.RelayIP.String()},
		{"-n", a, "route", "add", relayNet(n.RelayIP), "via", n.RAddrA.String()},
		{"-n", b, "route", "add", relayNet(n.RelayIP), "via", n.RAddrB.String()},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	// A new namespace does not forward by default on current kernels; say so rather than rely on
	// it. IPv6 is switched off in a and b so that no link-local path is left to wonder about.
	sysctls := []struct{ ns, path, value string }{
		{r, "/proc/sys/net/ipv4/ip_forward", "0"},
		{a, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
		{b, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
	}
	for _, s := range sysctls {
		if _, err := os.Stat(s.path); err != nil {
			continue // no IPv6 in this kernel: nothing to switch off
		}
		if err := ip("netns", "exec", s.ns, "sh", "-c", "echo "+s.value+" > "+s.path); err != nil {
			return err
		}
	}
	return nil
}

// relayNet is the /24 around the relay address, routed to r from a and b.
func relayNet(relayIP netip.Addr) string { return linkNet(relayIP) }

// linkNet is the /24 around addr.
func linkNet(addr netip.Addr) string {
	p, _ := addr.Prefix(24)
	return p.String()
}

// teardown kills whatever still runs inside the namespaces (only the test put anything there)
// and deletes them. Deleting a namespace removes its veth ends too.
func (n *Net) teardown() error {
	var errs []error
	for _, role := range []string{A, B, R} {
		if err := deleteNamespace(n.names[role]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func deleteNamespace(name string) error {
	if !namespaceExists(name) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return ip("netns", "del", name)
}

func namespaceExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// sweepStale deletes namespaces this package made in processes that no longer exist (a test
// binary killed before its cleanup ran). Best effort.
func sweepStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = deleteNamespace(e.Name())
		}
	}
}

// ip runs iproute2 with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
