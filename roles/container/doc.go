// Package container is the container role: a machine that renders applications for consumers.
//
// Its parts:
//   - lifecycle.go: the lifecycle state machine (configuring, awaiting_check, standby, busy,
//     needs_recheck, locked, offline) as pure logic: Next maps a state and an event to the next state.
//   - probe*.go, profiles.go: what the machine can render with, read through NVML, or a simulated
//     profile in devnets and simulations; a Reader probe also gives the full readings of a
//     telemetry report (checkers' performance reading). claiming.go: a probe that advertises one
//     machine and reads another, the seam of simulated cheaters.
//   - location.go: region codes and geohashes.
//   - container.go: the role's shell. It keeps the lifecycle durable through a Store and advertises
//     the container through a Network: a signed capability record, provider records under capability
//     keys, and signed heartbeats, each with its own republish loop on an injected clock.
//
// The role depends only on the small Network and Store interfaces; the node wires them to libp2p
// and the datastore.
package container
