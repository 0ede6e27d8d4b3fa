//go:build race

package main

// checkMethods are the check methods devnet tests use: the race detector slows rendering too much
// for challenge streams on every check.
const checkMethods = "telemetry"
