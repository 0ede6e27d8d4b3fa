//go:build race

package node

// raceEnabled: the race detector slows everything down several times; tests that stream video
// ask for less of it.
const raceEnabled = true
