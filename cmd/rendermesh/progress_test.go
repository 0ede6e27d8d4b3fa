package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/simnet"
)

// TestProgressAfterInterrupt: after an interrupt the progress display asks the simulation to stop,
// says so once, and goes on at its pace until the run ends; it used to spin on the closed context
// and write progress lines as fast as it could (9 GB of them while 1,000 peers shut down).
func TestProgressAfterInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var p simnet.Progress
	var out bytes.Buffer
	done := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(done) })
	showProgressEvery(ctx, &p, &out, done, false, time.Hour)
	if !p.Stop.Load() {
		t.Error("the interrupt did not ask the simulation to stop")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// The interrupt's line and the state at that moment; the next line is due in an hour.
	if len(lines) > 2 || !strings.Contains(lines[0], "interrupted") {
		t.Fatalf("wrote %d lines (%.200q...): want the interrupt's line and one progress line", len(lines), out.String())
	}
}
