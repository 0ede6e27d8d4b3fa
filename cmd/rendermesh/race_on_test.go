//go:build race

package main

// checkMethods are the check methods devnet tests use: the race detector slows rendering too much
// for challenge streams on every check.
const checkMethods = "telemetry"

// streamFPS is the frame rate devnet tests' sessions ask for: what two cores under the race
// detector stream for sure, with eight nodes and their checks beside (an honest session at 30
// frames/s on a loaded machine was judged a failure).
const streamFPS = "10"
