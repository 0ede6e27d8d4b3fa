package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLockDataDirTwice(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := lockDataDir(dir)
	if !errors.Is(err, ErrLocked) {
		second.release()
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, fmt.Sprintf("locked by process %d", os.Getpid()), "another --data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}

	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	third, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := third.release(); err != nil {
		t.Fatal(err)
	}
}

func TestLockReleaseNil(t *testing.T) {
	var l *dirLock
	if err := l.release(); err != nil {
		t.Fatalf("releasing no lock: %v", err)
	}
}

// lockChildEnv, when set, makes TestLockHeldByAnotherProcess the child: it tries to lock the data
// directory the variable names and exits.
const lockChildEnv = "RENDERMESH_TEST_LOCK_CHILD_DIR"

func TestLockHeldByAnotherProcess(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		l, err := lockDataDir(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		l.release()
		os.Exit(0)
	}

	dir := t.TempDir()
	l, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.release()

	// The child must fail at once, not wait for the lock: the deadline only guards the test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLockHeldByAnotherProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the second process waited for the lock instead of failing at once")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("second process: %v (stderr %q), want exit status 3", err, stderr.String())
	}
	if want := fmt.Sprintf("locked by process %d", os.Getpid()); !strings.Contains(stderr.String(), want) {
		t.Errorf("second process said %q, want it to contain %q", stderr.String(), want)
	}
}
