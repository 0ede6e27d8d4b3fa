package rendernetns

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// routed is a topology where consumer and container do reach each other, through a router:
//
//	a (consumer)                 r (router, relay)            b (container)
//	veth-r 10.78.1.2/24 ──────── veth-a 10.78.1.1/24
//	                             veth-b 10.78.2.1/24 ──────── veth-r 10.78.2.2/24
//	                             lo     10.78.3.1/32 (RelayIP)
//	default via 10.78.1.1        ip_forward=1                 default via 10.78.2.1
//
// The direct path (a ↔ r ↔ b, forwarded) and the relayed one (a ↔ TURN in r ↔ b) cross the
// same two links, so comparing them measures the relay itself. r's egress towards a (veth-a) is
// the container→consumer bottleneck a test can throttle with tc. internal/netnstest builds the
// opposite, blocked topology; this one is built here with iproute2 in the same way.
type routed struct {
	AIP, BIP, RelayIP netip.Addr
	names             map[string]string // role -> namespace name
}

// The roles of a routed topology, and the interface in r that leads to a.
const (
	nsA         = "a"
	nsB         = "b"
	nsR         = "r"
	towardsA    = "veth-a"
	routedNames = "rmbw" // namespace names: "rmbw<pid>-<random>-<role>"
)

// setupRouted builds a routed topology for t and tears it down (killing what runs inside) in
// t.Cleanup, even when the test fails.
func setupRouted(t *testing.T) *routed {
	t.Helper()
	sweepRouted()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := fmt.Sprintf("%s%d-%s-", routedNames, os.Getpid(), hex.EncodeToString(rnd[:]))
	n := &routed{
		AIP:     netip.MustParseAddr("10.78.1.2"),
		BIP:     netip.MustParseAddr("10.78.2.2"),
		RelayIP: netip.MustParseAddr("10.78.3.1"),
		names:   map[string]string{nsA: prefix + nsA, nsB: prefix + nsB, nsR: prefix + nsR},
	}
	t.Cleanup(func() {
		var errs []error
		for _, name := range n.names {
			errs = append(errs, deleteNamespace(name))
		}
		if err := errors.Join(errs...); err != nil {
			t.Errorf("routed topology teardown: %v", err)
		}
	})
	a, b, r := n.names[nsA], n.names[nsB], n.names[nsR]
	steps := [][]string{
		{"netns", "add", a}, {"netns", "add", b}, {"netns", "add", r},
		{"-n", a, "link", "set", "lo", "up"}, {"-n", b, "link", "set", "lo", "up"}, {"-n", r, "link", "set", "lo", "up"},
		{"-n", a, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-a", "netns", r},
		{"-n", b, "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-b", "netns", r},
		{"-n", a, "addr", "add", "10.78.1.2/24", "dev", "veth-r"},
		{"-n", r, "addr", "add", "10.78.1.1/24", "dev", "veth-a"},
		{"-n", b, "addr", "add", "10.78.2.2/24", "dev", "veth-r"},
		{"-n", r, "addr", "add", "10.78.2.1/24", "dev", "veth-b"},
		{"-n", r, "addr", "add", "10.78.3.1/32", "dev", "lo"},
		{"-n", a, "link", "set", "veth-r", "up"}, {"-n", r, "link", "set", "veth-a", "up"},
		{"-n", b, "link", "set", "veth-r", "up"}, {"-n", r, "link", "set", "veth-b", "up"},
		// r answers from RelayIP (a host with one public address: see internal/netnstest).
		{"-n", r, "route", "replace", "10.78.1.0/24", "dev", "veth-a", "src", "10.78.3.1"},
		{"-n", r, "route", "replace", "10.78.2.0/24", "dev", "veth-b", "src", "10.78.3.1"},
		{"-n", a, "route", "add", "default", "via", "10.78.1.1"},
		{"-n", b, "route", "add", "default", "via", "10.78.2.1"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatalf("routed topology: %v", err)
		}
	}
	sysctls := []struct{ ns, path, value string }{
		{r, "/proc/sys/net/ipv4/ip_forward", "1"},
		{a, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
		{b, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
		{r, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
	}
	for _, s := range sysctls {
		if _, err := os.Stat(s.path); err != nil {
			continue // no IPv6 in this kernel
		}
		if err := ip("netns", "exec", s.ns, "sh", "-c", "echo "+s.value+" > "+s.path); err != nil {
			t.Fatalf("routed topology: %v", err)
		}
	}
	return n
}

// in is the command maker for one of the topology's namespaces.
func (n *routed) in(role string) nsCommand { return inNamespace(n.names[role]) }

// tc runs tc inside r.
func (n *routed) tc(args ...string) error {
	return ip(append([]string{"netns", "exec", n.names[nsR], "tc"}, args...)...)
}

func deleteNamespace(name string) error {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
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

// sweepRouted deletes routed namespaces left by test processes that no longer exist.
func sweepRouted() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), routedNames)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = deleteNamespace(e.Name())
		}
	}
}

// ip runs the ip command with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
