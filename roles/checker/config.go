package checker

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults of a simulation test's VerifierConfig. The PSNR thresholds come from
// TestCalibratePSNR: the built-in scene through the sender's VP8 encoder at 320x180, 640x360 and
// 1280x720, 150, 500 and 2500 kbit/s, 8 seeds, 90 frames each (see docs/CHECKERS.md for the
// tables).
const (
	// DefaultSamplesPerSecond bounds how many frames a second are re-rendered and compared.
	DefaultSamplesPerSecond = 4
	// DefaultMinSamples is how many compared frames a verdict needs.
	DefaultMinSamples = 5
	// DefaultFloorPSNR: an honest frame measured 30.6 dB at the least (320x180, 150 kbit/s); a
	// frame of another seed 18.3 dB at the most and a frame from a second or more earlier 20.6.
	DefaultFloorPSNR = 25.0
	// DefaultMaxMismatch is the share of compared frames that may fail (a frame damaged in
	// transit and concealed by the decoder, say) before the content check fails.
	DefaultMaxMismatch = 0.1
	// DefaultFPSTolerance: the measured frame rate must reach this share of the one asked for.
	DefaultFPSTolerance = 0.8
	// DefaultMaxGap is the longest the stream may go without a frame.
	DefaultMaxGap = time.Second
	// DefaultClockSkew is how far the container's clock may be from the checker's.
	DefaultClockSkew = 100 * time.Millisecond
	// DefaultLatencySlack is what a direct stream adds to half the round trip between stamp and
	// arrival: a frame interval of waiting, encoding, packetising, decoding.
	DefaultLatencySlack = 150 * time.Millisecond
	// DefaultMaxLatency bounds the median stamp-to-arrival latency when no round trip is known.
	DefaultMaxLatency = 500 * time.Millisecond
	// DefaultMinBitrateKbps is below the sender's floor (150 kbit/s) with room for measurement.
	DefaultMinBitrateKbps = 100
)

// VerifierConfig tunes a Verifier. Zero fields take the defaults above; Rand is required.
type VerifierConfig struct {
	// Rand picks which frames are compared. It must be secret from the container (seed it from
	// crypto/rand in production), or the container could render only the frames it knows will
	// be looked at.
	Rand rand.Source
	// SamplesPerSecond bounds the frames compared per second of stream (the checker's cost).
	SamplesPerSecond float64
	// MinSamples is the least number of compared frames for a verdict on content.
	MinSamples int
	// FloorPSNR is the luma PSNR in dB a compared frame must reach against the re-rendered frame
	// its stamp names.
	FloorPSNR float64
	// AlignPSNR is by how many dB a compared frame must be closer to the frame its stamp names
	// than to the frame before it; default 0. An honest frame was closer by 1.1 dB at the least,
	// a frame shown again under the next stamp further by 2.4 dB at the least.
	AlignPSNR float64
	// MaxMismatch is the share of compared frames allowed to fail FloorPSNR or AlignPSNR.
	MaxMismatch float64
	// FPSTolerance is the share of the asked frame rate the stream must reach.
	FPSTolerance float64
	// MaxGap is the longest time without a decoded frame, the end of the session included.
	MaxGap time.Duration
	// ClockSkew is how far apart the two clocks may be: stamps may be this much older than the
	// challenge or newer than their arrival.
	ClockSkew time.Duration
	// LatencySlack and MaxLatency bound the median stamp-to-arrival latency: half the measured
	// round trip plus LatencySlack, or MaxLatency when no round trip was measured.
	LatencySlack, MaxLatency time.Duration
	// MinBitrateKbps is the least received bitrate.
	MinBitrateKbps float64
	// UnstampedShare is the share of decoded frames allowed without a readable stamp (default 0.1).
	UnstampedShare float64
}

// validate fills the defaults in and reports a field that cannot work.
func (c *VerifierConfig) validate() error {
	if c.Rand == nil {
		return fmt.Errorf("%w: VerifierConfig.Rand is nil (seed one from crypto/rand)", ErrConfig)
	}
	orDefault(&c.SamplesPerSecond, DefaultSamplesPerSecond)
	orDefault(&c.MinSamples, DefaultMinSamples)
	orDefault(&c.FloorPSNR, DefaultFloorPSNR)
	orDefault(&c.MaxMismatch, DefaultMaxMismatch)
	orDefault(&c.FPSTolerance, DefaultFPSTolerance)
	orDefault(&c.MaxGap, DefaultMaxGap)
	orDefault(&c.ClockSkew, DefaultClockSkew)
	orDefault(&c.LatencySlack, DefaultLatencySlack)
	orDefault(&c.MaxLatency, DefaultMaxLatency)
	orDefault(&c.MinBitrateKbps, DefaultMinBitrateKbps)
	orDefault(&c.UnstampedShare, 0.1)
	switch {
	case c.SamplesPerSecond < 0 || c.MinSamples < 0 || c.MaxGap < 0 || c.ClockSkew < 0 ||
		c.LatencySlack < 0 || c.MaxLatency < 0 || c.MinBitrateKbps < 0:
		return fmt.Errorf("%w: negative limit in %+v", ErrConfig, *c)
	case c.MaxMismatch < 0 || c.MaxMismatch >= 1 || c.FPSTolerance < 0 || c.FPSTolerance > 1 ||
		c.UnstampedShare < 0 || c.UnstampedShare >= 1:
		return fmt.Errorf("%w: MaxMismatch and UnstampedShare must lie in [0, 1), FPSTolerance in [0, 1]", ErrConfig)
	case c.FloorPSNR > MaxPSNR:
		return fmt.Errorf("%w: FloorPSNR %.1f above %.0f dB", ErrConfig, c.FloorPSNR, MaxPSNR)
	}
	return nil
}

func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}
