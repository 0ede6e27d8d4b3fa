// Package netnstest builds throwaway Linux network namespaces for tests that need real, blocked
// network paths: two hosts that cannot reach each other and a relay that both can reach.
//
// Setup(t) makes three namespaces, wired with veth pairs through iproute2:
//
//	a (consumer)                 r (relay)                    b (container)
//	veth-r 10.77.1.2/24 ──────── veth-a 10.77.1.1/24
//	                             veth-b 10.77.2.1/24 ──────── veth-r 10.77.2.2/24
//	                             lo     10.77.3.1/32 (RelayIP)
//	route 10.77.3.0/24                                        route 10.77.3.0/24
//	  via 10.77.1.1                                             via 10.77.2.1
//
// a and b have no route to each other's subnet and r does not forward (ip_forward=0), so a
// packet from a can reach r's addresses and nothing beyond. RelayIP, on r's loopback, is the one
// address both a and b reach through their own links, and r's routes to a and b name it as the
// preferred source, so r behaves like a host with one public address: a server in r on 0.0.0.0
// answers from RelayIP (without that, its answers would come from 10.77.1.1 or 10.77.2.1 and
// connected sockets, STUN clients among them, would drop them). A TURN server in r listens on
// 0.0.0.0, advertises RelayIP and binds its relay sockets there, so both peers reach the server
// and every relayed address at the same IP while still not reaching each other. Traffic between
// two allocations stays inside r (local delivery, no forwarding).
//
// Every namespace is private to one Setup, so the fixed addresses never collide between tests
// or runs; only the namespace names are global, and they carry the process id and a random
// suffix. Cmd runs a program inside a namespace (ip netns exec), typically the test binary
// itself re-executed with a role in its environment. Teardown in t.Cleanup kills whatever is
// still running inside the namespaces and deletes them, even when the test fails; namespaces
// left by a killed test process are swept by the next Setup.
//
// A test with real nodes runs the relay in r and one node in each of a and b:
//
//	if err := netnstest.Available(); err != nil {
//		t.Skip(err)
//	}
//	n := netnstest.Setup(t)
//	relay := n.CommandContext(ctx, netnstest.R, rendermeshBin, "--turn-listen=0.0.0.0:3478",
//		"--turn-relay-ip="+n.RelayIP.String()) // flags for illustration
//	container := n.CommandContext(ctx, netnstest.B, rendermeshBin, ...)
//	consumer := n.CommandContext(ctx, netnstest.A, rendermeshBin, ...)
//
// Everything that must be reachable from both sides (the TURN server, a bootstrap or signalling
// node) goes in r and is addressed as RelayIP; anything that would let a and b meet directly
// defeats the test.
package netnstest
