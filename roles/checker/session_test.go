package checker

import (
	"testing"
	"time"
)

func TestJudgeSession(t *testing.T) {
	good := SessionSample{Window: 10 * time.Second, FPSAsked: 30, Frames: 299, FPS: 29.9, Width: 1280, Height: 720,
		LatencyP50: 12 * time.Millisecond, LongestGap: 70 * time.Millisecond}
	with := func(f func(*SessionSample)) SessionSample { s := good; f(&s); return s }
	cases := []struct {
		name  string
		s     SessionSample
		ok    bool
		check Check
	}{
		{"a full-rate stream", good, true, CheckNone},
		{"at the bound (75%)", with(func(s *SessionSample) { s.FPS, s.Frames = 22.5, 225 }), true, CheckNone},
		{"half the frame rate, nothing lost", with(func(s *SessionSample) { s.FPS, s.Frames = 15, 150 }), true, CheckFrameRate},
		{"silent for 5 s", with(func(s *SessionSample) { s.LongestGap = 5 * time.Second }), true, CheckContinuity},
		{"half the frames lost on the way", with(func(s *SessionSample) { s.FPS, s.Frames, s.FramesLost = 15, 150, 150 }), false, CheckSessionNoisy},
		{"too short to judge", with(func(s *SessionSample) { s.Window = 2900 * time.Millisecond; s.FPS = 1 }), false, CheckNone},
		{"no rate asked", with(func(s *SessionSample) { s.FPSAsked = 0 }), false, CheckNone},
		{"a frozen window with nothing decoded", with(func(s *SessionSample) { s.FPS, s.Frames, s.LongestGap = 0, 0, 10*time.Second }), true, CheckContinuity},
	}
	for _, c := range cases {
		r, ok := JudgeSession(c.s, SessionRule{}, []byte("signed sample"))
		if ok != c.ok || r.Check != c.check {
			t.Errorf("%s: judged %v (ok %v), want %q (ok %v)", c.name, r, ok, c.check, c.ok)
			continue
		}
		if ok && (r.Verdict == Pass) != (c.check == CheckNone) {
			t.Errorf("%s: verdict %v with check %q", c.name, r.Verdict, r.Check)
		}
		if ok && r.Verdict == Fail && r.Reason == "" {
			t.Errorf("%s: a failure without a reason", c.name)
		}
	}
	// The evidence is the signed sample: another sample, another hash.
	a, _ := JudgeSession(good, SessionRule{}, []byte("one"))
	b, _ := JudgeSession(good, SessionRule{}, []byte("two"))
	if a.EvidenceHash == b.EvidenceHash || a.EvidenceHash == [32]byte{} {
		t.Error("the evidence hash does not follow the signed sample")
	}
}
