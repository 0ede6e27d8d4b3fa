package checker

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"
)

// Verdict is a check's outcome. The zero value is Fail: a result nobody filled in passes nothing.
type Verdict uint8

const (
	Fail Verdict = iota
	Pass
)

func (v Verdict) String() string {
	if v == Pass {
		return "pass"
	}
	return "fail"
}

// Check names the part of a check that failed; a passing Result has CheckNone. The values are
// stable words, fit for logs, metrics and attestations.
type Check string

const (
	CheckNone Check = ""

	// Simulation testing (Verifier).

	// CheckStream: too few frames with a readable stamp arrived to judge anything.
	CheckStream Check = "stream"
	// CheckFreshness: stamps from before the challenge (a recording), frame numbers or stamp
	// times that do not increase (replayed or reordered frames), or stamps from the future.
	CheckFreshness Check = "freshness"
	// CheckContent: the pictures are not the scene the challenge's nonce seeds, at the frame
	// their stamps name (another seed, or frames shown again under new stamps).
	CheckContent Check = "content"
	// CheckContinuity: the stream stopped (a gap longer than VerifierConfig.MaxGap, the end of
	// the session included).
	CheckContinuity Check = "continuity"
	// CheckResolution: the frames are not the size asked for.
	CheckResolution Check = "resolution"
	// CheckFrameRate: fewer frames a second than asked for.
	CheckFrameRate Check = "frame_rate"
	// CheckLatency: stamps arrive later than a direct stream from this container would.
	CheckLatency Check = "latency"
	// CheckBitrate: the stream's bitrate is below what the sender ever sends.
	CheckBitrate Check = "bitrate"

	// Performance readings (CheckTelemetry).

	// CheckTelemetryGPUs: the readings are not of the GPUs the container advertises (count,
	// model, UUID, memory).
	CheckTelemetryGPUs Check = "telemetry_gpus"
	// CheckTelemetryPhysics: a reading no working GPU gives (power outside [idle floor, limit],
	// temperature out of range, memory used above total, clocks above their maximum, ...).
	CheckTelemetryPhysics Check = "telemetry_physics"
	// CheckTelemetryState: the load does not fit the container's state (busy while in standby,
	// idle while rendering).
	CheckTelemetryState Check = "telemetry_state"
	// CheckTelemetryReplay: readings that do not vary over the window, are copied between GPUs,
	// or whose sample times do not advance: made up or replayed.
	CheckTelemetryReplay Check = "telemetry_replay"
)

// Result is what a check concluded.
type Result struct {
	Verdict Verdict
	// Check is the first part that failed (CheckNone when the verdict is Pass), Reason says what
	// was wrong in words.
	Check  Check
	Reason string
	// Measurements of a simulation test (Verifier.Finish); zero for CheckTelemetry.
	Measurements Measurements
	// Telemetry summarises the readings CheckTelemetry judged; zero for a simulation test.
	Telemetry TelemetryMeasurements
	// EvidenceHash is the SHA-256 of a canonical encoding of what the check measured and saw
	// (see evidence): a checker signs it into its attestation and keeps the data, so the
	// verdict can be re-derived if disputed.
	EvidenceHash [32]byte
}

// Measurements are what a simulation test measured.
type Measurements struct {
	Frames        int           // frames decoded
	FramesStamped int           // of which with a readable stamp
	FPS           float64       // decoded frames per second, first to last arrival
	Width, Height int           // the size most stamped frames had
	LatencyP50    time.Duration // stamp to arrival, median (on two clocks: includes their offset)
	LatencyBound  time.Duration // the most LatencyP50 could be and pass
	MaxGap        time.Duration // longest time without a frame, up to the end of the session
	BitrateKbps   float64       // received, as the player measured it
	FramesChecked int           // sampled frames re-rendered and compared
	FramesMatched int           // of which showed the frame their stamp names
	PSNRMin       float64       // luma PSNR of the sampled frames against the re-rendered scene, dB
	PSNRMedian    float64
}

// TelemetryMeasurements summarise a window of GPU readings.
type TelemetryMeasurements struct {
	GPUs              int
	Samples           int
	Window            time.Duration // first to last sample
	UtilizationMean   float64       // percent, over every GPU and sample
	PowerMinW         float64       // over every GPU and sample
	PowerMaxW         float64
	TemperatureMinC   uint32
	TemperatureMaxC   uint32
	MemoryUsedMaxFrac float64 // the highest memory used / total of any GPU
}

// evidence builds the canonical byte encoding an EvidenceHash is taken over: fixed-width
// big-endian integers, length-prefixed strings, durations in microseconds, ratios and decibels
// as integers in fixed units. Floats are rounded to those units so that two implementations that
// measure the same thing hash the same bytes.
type evidence struct{ b []byte }

func newEvidence(domain string) *evidence {
	e := &evidence{}
	e.str(domain)
	return e
}

func (e *evidence) u64(v uint64)        { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *evidence) i64(v int64)         { e.u64(uint64(v)) }
func (e *evidence) dur(d time.Duration) { e.i64(d.Microseconds()) }
func (e *evidence) time(t time.Time)    { e.i64(t.UnixMicro()) }
func (e *evidence) bytes(b []byte)      { e.u64(uint64(len(b))); e.b = append(e.b, b...) }
func (e *evidence) str(s string)        { e.bytes([]byte(s)) }

// milli encodes a float in thousandths (frame rates, kbit/s, percent, watts, decibels).
func (e *evidence) milli(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		f = 0
	}
	e.i64(int64(math.Round(f * 1000)))
}

func (e *evidence) sum() [32]byte { return sha256.Sum256(e.b) }

func (e *evidence) result(r *Result) {
	e.u64(uint64(r.Verdict))
	e.str(string(r.Check))
}

func (e *evidence) measurements(m *Measurements) {
	for _, v := range []int{m.Frames, m.FramesStamped, m.Width, m.Height, m.FramesChecked, m.FramesMatched} {
		e.i64(int64(v))
	}
	for _, d := range []time.Duration{m.LatencyP50, m.LatencyBound, m.MaxGap} {
		e.dur(d)
	}
	for _, f := range []float64{m.FPS, m.BitrateKbps, m.PSNRMin, m.PSNRMedian} {
		e.milli(f)
	}
}
