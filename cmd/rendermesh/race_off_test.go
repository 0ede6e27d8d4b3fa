//go:build !race

package main

const checkMethods = "telemetry,simulation"

const streamFPS = "30"
