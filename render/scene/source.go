package scene

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Source produces the frames of a render session: the built-in scene (SceneSource) or a real
// application captured by an external command (CommandSource).
type Source interface {
	// Size is the size of the frames Next writes.
	Size() (w, h int)
	// Next writes the next frame into dst, a 4:2:0 image of Size (NewFrame makes one). It blocks
	// until the frame is there.
	Next(dst *image.YCbCr) error
	// Close releases the source; Next then fails. Calling it again does nothing.
	Close() error
}

var (
	// ErrClosed is returned by a source's Next after Close.
	ErrClosed = errors.New("scene: source closed")
	// ErrEnded is returned (wrapped) when a command source's command ended: the message says how
	// it exited and what it last wrote to stderr.
	ErrEnded = errors.New("scene: source ended")
	// ErrShortFrame is returned (wrapped, with ErrEnded) when the command ended in the middle of
	// a frame.
	ErrShortFrame = errors.New("scene: short frame")
	// ErrFrameSize is returned when the frame given to Next does not have the source's size.
	ErrFrameSize = errors.New("scene: frame size does not match the source")
)

// checkFrame reports whether dst is a usable 4:2:0 frame of w x h.
func checkFrame(dst *image.YCbCr, w, h int) error {
	if dst == nil || dst.SubsampleRatio != image.YCbCrSubsampleRatio420 ||
		dst.Rect.Dx() != w || dst.Rect.Dy() != h || dst.Rect.Min.X&1 != 0 || dst.Rect.Min.Y&1 != 0 ||
		dst.YStride < w || dst.CStride < (w+1)/2 ||
		len(dst.Y) < (h-1)*dst.YStride+w ||
		len(dst.Cb) < ((h+1)/2-1)*dst.CStride+(w+1)/2 || len(dst.Cr) < len(dst.Cb) {
		if dst == nil {
			return fmt.Errorf("%w: nil frame, want %dx%d 4:2:0", ErrFrameSize, w, h)
		}
		return fmt.Errorf("%w: got %v %v, want %dx%d 4:2:0", ErrFrameSize, dst.Rect, dst.SubsampleRatio, w, h)
	}
	return nil
}

// SceneSource is the built-in scene as a Source: each Next renders the next frame (numbered from
// the start value given to NewSceneSource), stamped with the time the clock returns. It does not
// pace itself: the caller's ticker sets the frame rate. It is not safe for concurrent use,
// except for the scene's SetPointer.
type SceneSource struct {
	scene  *Scene
	now    func() time.Time
	frame  uint32
	closed bool
}

// NewSceneSource returns a source rendering s; first is the number of the first frame and now
// the clock for the stamps (time.Now in production, a fake clock in tests).
func NewSceneSource(s *Scene, first uint32, now func() time.Time) *SceneSource {
	return &SceneSource{scene: s, now: now, frame: first}
}

// Scene is the scene the source renders, for SetPointer and Resize.
func (s *SceneSource) Scene() *Scene { return s.scene }

// Size is the scene's size.
func (s *SceneSource) Size() (w, h int) { return s.scene.Size() }

// Frame is the number the next frame will carry.
func (s *SceneSource) Frame() uint32 { return s.frame }

// Next renders the next frame into dst.
func (s *SceneSource) Next(dst *image.YCbCr) error {
	if s.closed {
		return ErrClosed
	}
	w, h := s.scene.Size()
	if err := checkFrame(dst, w, h); err != nil {
		return err
	}
	s.scene.Render(dst, s.frame, s.now())
	s.frame++
	return nil
}

// Close makes later calls to Next fail.
func (s *SceneSource) Close() error {
	s.closed = true
	return nil
}

// CommandSource reads raw I420 frames (yuv420p: the Y plane, then U, then V, w*h*3/2 bytes for
// even sizes) that a command writes to its standard output, such as
//
//	ffmpeg -f x11grab -video_size 1280x720 -i :0 -f rawvideo -pix_fmt yuv420p -
//
// Next returns the oldest frame not read yet, so the command should produce frames at the
// session's frame rate (ffmpeg: -framerate before -i); frames it writes faster queue up in the
// pipe and in the command, and add latency.
//
// The command runs in its own process group, so that Close (or cancelling the context given to
// NewCommandSource) stops it and anything it started. Next and Close may be called from
// different goroutines; Next itself is not safe for concurrent use.
type CommandSource struct {
	argv   []string
	w, h   int
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *tailBuffer
	buf    []byte
	frames int

	// The consumer's input goes to the command's standard input, one JSON event per line
	// (render/input's wire format), through a bounded queue: a command that does not read its
	// input loses events, it never stalls the stream.
	input   chan []byte
	dropped atomic.Int64

	waitOnce sync.Once
	waitErr  error
	mu       sync.Mutex
	closed   bool
	reaped   bool // Wait has returned: the process id may belong to someone else now
}

// FrameBytes is the size of one w x h I420 frame.
func FrameBytes(w, h int) int {
	cw, ch := (w+1)/2, (h+1)/2
	return w*h + 2*cw*ch
}

// NewCommandSource starts argv and returns a source reading w x h I420 frames from its standard
// output. Cancelling ctx kills the command.
func NewCommandSource(ctx context.Context, argv []string, w, h int) (*CommandSource, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("scene: command source: empty command")
	}
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("scene: command source: bad frame size %dx%d", w, h)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killProcessGroup(cmd) }
	cmd.WaitDelay = 2 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("scene: command source: %w", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("scene: command source: %w", err)
	}
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scene: command source: start %q: %w", argv[0], err)
	}
	s := &CommandSource{
		argv:   append([]string(nil), argv...),
		w:      w,
		h:      h,
		cmd:    cmd,
		stdout: stdout,
		stderr: stderr,
		buf:    make([]byte, FrameBytes(w, h)),
		input:  make(chan []byte, inputQueue),
	}
	go s.writeInput(stdin)
	return s, nil
}

// inputQueue bounds the input events waiting for the command to read them.
const inputQueue = 256

// Input queues one input event (a JSON line without its newline) for the command's standard
// input; when the queue is full the event is dropped and counted.
func (s *CommandSource) Input(event []byte) {
	line := append(append(make([]byte, 0, len(event)+1), event...), '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.input <- line:
	default:
		s.dropped.Add(1)
	}
}

// InputDropped counts the input events dropped because the command did not read them in time.
func (s *CommandSource) InputDropped() int64 { return s.dropped.Load() }

func (s *CommandSource) writeInput(stdin io.WriteCloser) {
	defer stdin.Close()
	for line := range s.input {
		if _, err := stdin.Write(line); err != nil {
			for range s.input { // the command stopped reading: drain until Close
				s.dropped.Add(1)
			}
			return
		}
	}
}

// Size is the frame size given to NewCommandSource.
func (s *CommandSource) Size() (w, h int) { return s.w, s.h }

// Next reads one whole frame into dst. When the command has ended it returns an error wrapping
// ErrEnded (and ErrShortFrame if the last frame was cut short) that says how the command exited.
func (s *CommandSource) Next(dst *image.YCbCr) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := checkFrame(dst, s.w, s.h); err != nil {
		return err
	}
	n, err := io.ReadFull(s.stdout, s.buf)
	if err != nil {
		if s.isClosed() {
			return ErrClosed
		}
		exit := s.wait()
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: %w: %q wrote %d of %d bytes of frame %d, then exited: %s",
				ErrEnded, ErrShortFrame, s.argv[0], n, len(s.buf), s.frames, s.describe(exit))
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: %q exited after %d frames: %s", ErrEnded, s.argv[0], s.frames, s.describe(exit))
		default:
			return fmt.Errorf("%w: reading %q: %v; exited: %s", ErrEnded, s.argv[0], err, s.describe(exit))
		}
	}
	s.frames++
	w, h := s.w, s.h
	cw, ch := (w+1)/2, (h+1)/2
	src := s.buf
	for y := range h {
		copy(dst.Y[y*dst.YStride:y*dst.YStride+w], src[y*w:])
	}
	src = src[w*h:]
	for y := range ch {
		copy(dst.Cb[y*dst.CStride:y*dst.CStride+cw], src[y*cw:])
	}
	src = src[cw*ch:]
	for y := range ch {
		copy(dst.Cr[y*dst.CStride:y*dst.CStride+cw], src[y*cw:])
	}
	return nil
}

// describe says how the command exited: its exit status and the end of its stderr.
func (s *CommandSource) describe(exit error) string {
	status := "exit status 0"
	if exit != nil {
		status = exit.Error()
	}
	if tail := strings.TrimSpace(s.stderr.String()); tail != "" {
		status += "; stderr: " + tail
	}
	return status
}

// wait reaps the command once and returns how it exited.
func (s *CommandSource) wait() error {
	s.waitOnce.Do(func() {
		err := s.cmd.Wait()
		s.mu.Lock()
		s.reaped = true
		s.mu.Unlock()
		s.waitErr = err
	})
	return s.waitErr
}

func (s *CommandSource) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close kills the command (and its process group) if it is still running and waits for it.
// It returns nil: how a killed command exited is not news.
func (s *CommandSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.input)
	if !s.reaped {
		_ = killProcessGroup(s.cmd)
	}
	s.mu.Unlock()
	s.wait()
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
