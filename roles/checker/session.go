package checker

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// Checks during a consumer's session. With its consent, a consumer samples its session's stream
// (frames decoded, frame numbers skipped, size, latency, the longest time without a frame) and
// sends each sample, signed, to a checker the epoch's seed assigns to the container; JudgeSession
// turns a sample into a verdict. The consumer's measurements cannot be verified the way a challenge
// can, so the rule judges only what a container cannot blame on the consumer's network: a window
// that lost frames says nothing, one that asked for 30 frames/s and got 14 with none lost, or
// froze for seconds, does. A failure sends the container to needs_recheck, where its assigned
// checkers' own checks decide; a consumer alone cannot exclude it (ConsequenceRule.MinCheckers).

// CheckSessionNoisy is the inconclusive outcome of a sample taken over a lossy network (not a
// failure; nothing is attested).
const CheckSessionNoisy Check = "session_noisy"

// SessionSample is one window of a session's stream as the consumer measured it.
type SessionSample struct {
	Window        time.Duration
	FPSAsked      int
	Frames        int // decoded in the window
	FramesLost    int // frame numbers the stream skipped
	FPS           float64
	Width, Height int
	LatencyP50    time.Duration
	LongestGap    time.Duration // the longest time without a decoded frame
}

// SessionRule says how a sample is judged. Zero fields take DefaultSessionRule's.
type SessionRule struct {
	// MinWindow: shorter samples are not judged.
	MinWindow time.Duration
	// MaxLoss: a sample that lost a larger share of its frames is not judged (the network, not the
	// container, may be to blame).
	MaxLoss float64
	// MinFPSRatio: decoded frames per second below this share of the rate asked fail frame_rate.
	MinFPSRatio float64
	// MaxGap: a longer time without a frame fails continuity (a container gone silent).
	MaxGap time.Duration
}

// DefaultSessionRule: windows of 3 s or more, at most 5% of the frames lost, at least 75% of the
// frame rate asked, no gap over 3 s (a bandwidth cut froze a stream for 1.2 s at most,
// docs/BENCHMARKS.md).
var DefaultSessionRule = SessionRule{MinWindow: 3 * time.Second, MaxLoss: 0.05, MinFPSRatio: 0.75, MaxGap: 3 * time.Second}

func (r SessionRule) withDefaults() SessionRule {
	d := DefaultSessionRule
	if r.MinWindow <= 0 {
		r.MinWindow = d.MinWindow
	}
	if r.MaxLoss <= 0 {
		r.MaxLoss = d.MaxLoss
	}
	if r.MinFPSRatio <= 0 {
		r.MinFPSRatio = d.MinFPSRatio
	}
	if r.MaxGap <= 0 {
		r.MaxGap = d.MaxGap
	}
	return r
}

// JudgeSession judges one sample. ok is false when the sample says nothing about the container
// (too short, too lossy): nothing is attested. signed is the consumer's signed sample, the evidence
// the checker keeps; the result's EvidenceHash is over it, so anyone holding it can judge again.
func JudgeSession(s SessionSample, rule SessionRule, signed []byte) (r Result, ok bool) {
	rule = rule.withDefaults()
	r = Result{Verdict: Pass, Measurements: Measurements{
		Frames: s.Frames, FramesStamped: s.Frames, FPS: s.FPS, Width: s.Width, Height: s.Height,
		LatencyP50: s.LatencyP50, MaxGap: s.LongestGap,
	}}
	h := sha256.New()
	h.Write([]byte("rendermesh session stats\x00"))
	h.Write(signed)
	h.Sum(r.EvidenceHash[:0])
	if s.Window < rule.MinWindow || s.FPSAsked <= 0 {
		return r, false
	}
	if total := s.Frames + s.FramesLost; total > 0 && float64(s.FramesLost)/float64(total) > rule.MaxLoss {
		return Result{Check: CheckSessionNoisy}, false
	}
	switch {
	case s.LongestGap > rule.MaxGap:
		r.Verdict, r.Check = Fail, CheckContinuity
		r.Reason = fmt.Sprintf("no frame for %v in a session", s.LongestGap.Round(10*time.Millisecond))
	case s.FPS < rule.MinFPSRatio*float64(s.FPSAsked):
		r.Verdict, r.Check = Fail, CheckFrameRate
		r.Reason = fmt.Sprintf("%.1f frames/s in a session, asked for %d", s.FPS, s.FPSAsked)
	}
	return r, true
}
