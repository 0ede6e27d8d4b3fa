package vpx

import "fmt"

// Defaults for the zero fields of an EncoderConfig.
const (
	DefaultFPS              = 30
	DefaultBitrateKbps      = 2000
	DefaultThreads          = 1
	DefaultCPUUsed          = 8
	DefaultKeyframeInterval = 3000 // 100 s at 30 fps: keyframes come when asked for
)

// Limits on frame sizes.
const (
	MinDimension = 16   // encoder
	MaxDimension = 8192 // encoder
	// DefaultMaxDecodeDimension bounds the frames a Decoder accepts unless WithMaxFrameSize says
	// otherwise: 4096x4096 covers 4K UHD and keeps libvpx's buffers for a hostile stream near
	// 100 MiB.
	DefaultMaxDecodeDimension = 4096
)

// EncoderConfig configures an Encoder. Zero fields take the defaults above.
type EncoderConfig struct {
	// Width and Height of the frames, even and between MinDimension and MaxDimension.
	Width, Height int
	// FPS is the frame rate the rate control plans for (1..240).
	FPS int
	// BitrateKbps is the target bitrate in kbit/s (constant bitrate).
	BitrateKbps int
	// Threads is how many threads libvpx encodes with (1..16); the frame is split into as many
	// token partitions (rounded down to 1, 2, 4 or 8).
	Threads int
	// CPUUsed is VP8's speed, 1..16: higher is faster and worse. It is fixed; libvpx's
	// time-adaptive speed is not used, so output does not depend on machine load.
	CPUUsed int
	// KeyframeInterval is the longest run of frames between keyframes. libvpx may also start
	// one on a scene cut; Encode's forceKeyframe starts one on demand.
	KeyframeInterval int
	// FrameDropThreshold lets libvpx skip frames when its buffer runs below this percentage of
	// the optimal level (1..100; WebRTC uses 30), which keeps latency down when the content is
	// too hard for the bitrate. 0, the default, never drops.
	FrameDropThreshold int
}

// Validate fills the zero fields with defaults and reports the first invalid one.
func (c *EncoderConfig) Validate() error {
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.BitrateKbps == 0 {
		c.BitrateKbps = DefaultBitrateKbps
	}
	if c.Threads == 0 {
		c.Threads = DefaultThreads
	}
	if c.CPUUsed == 0 {
		c.CPUUsed = DefaultCPUUsed
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	if err := checkSize(c.Width, c.Height); err != nil {
		return err
	}
	switch {
	case c.FPS < 1 || c.FPS > 240:
		return fmt.Errorf("%w: FPS %d, want 1..240", ErrInvalidConfig, c.FPS)
	case c.BitrateKbps < 1 || c.BitrateKbps > maxBitrateKbps:
		return fmt.Errorf("%w: bitrate %d kbit/s, want 1..%d", ErrInvalidConfig, c.BitrateKbps, maxBitrateKbps)
	case c.Threads < 1 || c.Threads > 16:
		return fmt.Errorf("%w: %d threads, want 1..16", ErrInvalidConfig, c.Threads)
	case c.CPUUsed < 1 || c.CPUUsed > 16:
		return fmt.Errorf("%w: CPUUsed %d, want 1..16", ErrInvalidConfig, c.CPUUsed)
	case c.KeyframeInterval < 1:
		return fmt.Errorf("%w: keyframe interval %d, want at least 1", ErrInvalidConfig, c.KeyframeInterval)
	case c.FrameDropThreshold < 0 || c.FrameDropThreshold > 100:
		return fmt.Errorf("%w: frame drop threshold %d, want 0..100", ErrInvalidConfig, c.FrameDropThreshold)
	}
	return nil
}

const maxBitrateKbps = 1_000_000

func checkSize(w, h int) error {
	if w < MinDimension || h < MinDimension || w > MaxDimension || h > MaxDimension || w%2 != 0 || h%2 != 0 {
		return fmt.Errorf("%w: size %dx%d, want even sides of %d..%d pixels", ErrInvalidConfig, w, h, MinDimension, MaxDimension)
	}
	return nil
}
