package scene

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSourceConformance is what every Source must do: frames of its size, a clear error for a
// frame of another size, and Close that ends Next and can be repeated.
func testSourceConformance(t *testing.T, src Source, frames int) {
	t.Helper()
	w, h := src.Size()
	if w <= 0 || h <= 0 {
		t.Fatalf("Size() = %dx%d", w, h)
	}
	if err := src.Next(NewFrame(w+2, h)); !errors.Is(err, ErrFrameSize) {
		t.Fatalf("Next with a wrong frame: %v, want ErrFrameSize", err)
	}
	f := NewFrame(w, h)
	for i := range frames {
		if err := src.Next(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := src.Next(f); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}

func TestSourceConformance(t *testing.T) {
	t.Run("scene", func(t *testing.T) {
		testSourceConformance(t, NewSceneSource(New(320, 180, nil), 0, time.Now), 3)
	})
	t.Run("command", func(t *testing.T) {
		src, err := NewCommandSource(t.Context(), []string{"cat", "/dev/zero"}, 320, 180)
		if err != nil {
			t.Fatal(err)
		}
		testSourceConformance(t, src, 3)
	})
}

func TestSceneSourceNumbersAndStampsFrames(t *testing.T) {
	clock := t0
	now := func() time.Time { clock = clock.Add(33 * time.Millisecond); return clock }
	src := NewSceneSource(New(640, 360, []byte("s")), 100, now)
	f := NewFrame(640, 360)
	for i := range uint32(5) {
		if err := src.Next(f); err != nil {
			t.Fatal(err)
		}
		frame, tm, ok := ReadStamp(f)
		want := t0.Add(time.Duration(i+1) * 33 * time.Millisecond)
		if !ok || frame != 100+i || !tm.Equal(want.Truncate(time.Microsecond)) {
			t.Fatalf("frame %d: read (%d, %v, %v)", i, frame, tm, ok)
		}
	}
	if src.Frame() != 105 {
		t.Fatalf("next frame %d", src.Frame())
	}
}

func needCommand(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

func TestCommandSourceReadsWholeFramesThenReportsExit(t *testing.T) {
	needCommand(t, "head")
	const w, h = 64, 36
	n := FrameBytes(w, h)
	src, err := NewCommandSource(t.Context(), []string{"head", "-c", fmt.Sprint(2 * n), "/dev/zero"}, w, h)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f := NewFrame(w, h)
	for i := range 2 {
		for j := range f.Y {
			f.Y[j] = 7
		}
		if err := src.Next(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Y[0] != 0 || f.Cr[len(f.Cr)-1] != 0 {
			t.Fatalf("frame %d not copied", i)
		}
	}
	err = src.Next(f)
	if !errors.Is(err, ErrEnded) || errors.Is(err, ErrShortFrame) ||
		!strings.Contains(err.Error(), "exited after 2 frames") || !strings.Contains(err.Error(), "exit status 0") {
		t.Fatalf("after the last frame: %v", err)
	}
}

func TestCommandSourceShortFrame(t *testing.T) {
	needCommand(t, "head")
	const w, h = 64, 36
	n := FrameBytes(w, h)
	src, err := NewCommandSource(t.Context(), []string{"head", "-c", fmt.Sprint(n + 100), "/dev/zero"}, w, h)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f := NewFrame(w, h)
	if err := src.Next(f); err != nil {
		t.Fatal(err)
	}
	err = src.Next(f)
	if !errors.Is(err, ErrShortFrame) || !errors.Is(err, ErrEnded) ||
		!strings.Contains(err.Error(), fmt.Sprintf("wrote 100 of %d bytes", n)) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("short frame: %v", err)
	}
}

func TestCommandSourceReportsFailure(t *testing.T) {
	needCommand(t, "sh")
	src, err := NewCommandSource(t.Context(), []string{"sh", "-c", "echo no display >&2; exit 3"}, 64, 36)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.Next(NewFrame(64, 36))
	if !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "no display") {
		t.Fatalf("failing command: %v", err)
	}
}

func TestCommandSourcePlaneLayout(t *testing.T) {
	needCommand(t, "cat")
	const w, h = 6, 4 // Y 24 bytes, U 6, V 6
	raw := make([]byte, FrameBytes(w, h))
	for i := range raw {
		raw[i] = byte(i)
	}
	path := filepath.Join(t.TempDir(), "frame.yuv")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := NewCommandSource(t.Context(), []string{"cat", path}, w, h)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// A frame with padded strides, to check the copy honours them.
	f := NewFrame(w, h)
	f.YStride, f.CStride = 10, 5
	f.Y, f.Cb, f.Cr = make([]byte, 10*h), make([]byte, 5*2), make([]byte, 5*2)
	if err := src.Next(f); err != nil {
		t.Fatal(err)
	}
	if f.Y[1*10+2] != 8 || f.Cb[1*5+2] != 24+5 || f.Cr[0] != 30 || f.Cr[1*5+2] != 35 {
		t.Fatalf("planes: Y %v Cb %v Cr %v", f.Y, f.Cb, f.Cr)
	}
}

func TestCommandSourceCloseStopsBlockedNext(t *testing.T) {
	needCommand(t, "sleep")
	src, err := NewCommandSource(context.Background(), []string{"sh", "-c", "sleep 600"}, 64, 36)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.Next(NewFrame(64, 36)) }()
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	// Close killed the whole process group (sh and its sleep), so the read ended.
	if err := <-done; err == nil {
		t.Fatal("Next returned a frame from a command that wrote nothing")
	}
}

func TestCommandSourceContextCancelKills(t *testing.T) {
	needCommand(t, "sleep")
	ctx, cancel := context.WithCancel(context.Background())
	src, err := NewCommandSource(ctx, []string{"sleep", "600"}, 64, 36)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cancel()
	if err := src.Next(NewFrame(64, 36)); !errors.Is(err, ErrEnded) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("after cancel: %v", err)
	}
}

func TestNewCommandSourceErrors(t *testing.T) {
	if _, err := NewCommandSource(t.Context(), nil, 64, 36); err == nil {
		t.Fatal("empty argv accepted")
	}
	if _, err := NewCommandSource(t.Context(), []string{"cat"}, 0, 36); err == nil {
		t.Fatal("zero width accepted")
	}
	if _, err := NewCommandSource(t.Context(), []string{"/nonexistent/capture"}, 64, 36); err == nil {
		t.Fatal("missing command accepted")
	}
}

// The consumer's input reaches the command's standard input, a JSON line per event.
func TestCommandSourceForwardsInput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "input")
	w, h := 16, 16
	script := fmt.Sprintf("head -c %d /dev/zero; cat > %s", FrameBytes(w, h), out)
	src, err := NewCommandSource(context.Background(), []string{"sh", "-c", script}, w, h)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Next(NewFrame(w, h)); err != nil {
		t.Fatal(err)
	}
	src.Input([]byte(`{"t":"key","k":"KeyW","d":true,"ts":1}`))
	src.Input([]byte(`{"t":"move","x":0.5,"y":0.5,"ts":2}`))
	want := "{\"t\":\"key\",\"k\":\"KeyW\",\"d\":true,\"ts\":1}\n{\"t\":\"move\",\"x\":0.5,\"y\":0.5,\"ts\":2}\n"
	deadline := time.Now().Add(10 * time.Second) // a child process: wall clock
	for {
		b, _ := os.ReadFile(out)
		if string(b) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command read %q, want %q", b, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	src.Input([]byte(`{"t":"ping","id":1,"ts":3}`)) // after Close: dropped quietly, no panic
}
