package input

import (
	"testing"
	"time"
)

func TestRTT(t *testing.T) {
	ms := time.Millisecond
	var r RTT
	if r.P50() != 0 || r.Smoothed() != 0 || r.Count() != 0 {
		t.Fatalf("empty RTT = %v, %v, %d", r.P50(), r.Smoothed(), r.Count())
	}
	steps := []struct {
		add           time.Duration
		p50, smoothed time.Duration
	}{
		{40 * ms, 40 * ms, 40 * ms},
		{-5 * ms, 40 * ms, 40 * ms},  // ignored
		{120 * ms, 40 * ms, 50 * ms}, // lower middle of two; EWMA moves by 1/8
		{48 * ms, 48 * ms, 49750 * time.Microsecond},
	}
	for i, s := range steps {
		r.Observe(s.add)
		if r.P50() != s.p50 || r.Smoothed() != s.smoothed {
			t.Fatalf("step %d (add %v): p50 %v smoothed %v, want %v %v", i, s.add, r.P50(), r.Smoothed(), s.p50, s.smoothed)
		}
	}
	// The median looks at the last 64 only: 64 samples of 10 ms push the others out.
	for range rttWindow {
		r.Observe(10 * ms)
	}
	if r.P50() != 10*ms || r.Count() != 3+rttWindow {
		t.Fatalf("after a window of 10 ms: p50 %v, count %d", r.P50(), r.Count())
	}
}

func TestSince(t *testing.T) {
	pong := Event{Type: TypePong, ID: 1, TS: 1000}
	if d, ok := Since(pong, 1012.5); !ok || d != 12500*time.Microsecond {
		t.Fatalf("Since = %v, %v", d, ok)
	}
	if _, ok := Since(pong, 999); ok {
		t.Fatal("a pong from the future was accepted")
	}
	if _, ok := Since(Event{Type: TypePing, TS: 1}, 2); ok {
		t.Fatal("a ping was taken for a pong")
	}
}
