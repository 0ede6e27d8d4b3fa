package netnstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary re-executes itself inside the namespaces: roleEnv names what the child does.
const roleEnv = "RM_NETNS_ROLE"

// childTimeout bounds every child process; parentTimeout bounds a parent's wait for children
// (longer, so that a child reports its own timeout before it is killed). No test asserts on
// durations: these only keep a failure from hanging CI.
const (
	childTimeout  = 20 * time.Second
	parentTimeout = 30 * time.Second
)

var roles = map[string]func(ctx context.Context, in <-chan string, out *lineWriter) error{
	"udp-echo":  runUDPEcho,
	"udp-probe": runUDPProbe,
	"relay":     runRelay,
	"offerer":   runOfferer,
	"answerer":  runAnswerer,
}

// childStart is when this process started, for the timestamps in logf.
var childStart = time.Now()

// logf writes a child's log line to stderr, stamped with the time since it started.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%7.3fs "+format+"\n", append([]any{time.Since(childStart).Seconds()}, args...)...)
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// runChild runs one role. Its stdin and stdout carry protocol lines ("WORD payload"); logs go to
// stderr. A role ends when it returns; most wait for stdin to close first, so the parent decides
// when they stop.
func runChild(role string) int {
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", roleEnv, role)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	in := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			in <- sc.Text()
		}
		close(in)
	}()
	if err := run(ctx, in, &lineWriter{w: os.Stdout}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

// lineWriter writes protocol lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) send(word, payload string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s\n", word, payload)
}

// expect reads the next line of in, which must start with word, and returns its payload.
func expect(ctx context.Context, in <-chan string, word string) (string, error) {
	select {
	case line, ok := <-in:
		if !ok {
			return "", fmt.Errorf("input closed, want %s", word)
		}
		got, payload, _ := strings.Cut(line, " ")
		if got != word {
			return "", fmt.Errorf("got %q, want %s", line, word)
		}
		return payload, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for %s: %w", word, ctx.Err())
	}
}

// waitClosed waits for the parent to close stdin (it is done with this child).
func waitClosed(ctx context.Context, in <-chan string) error {
	for {
		select {
		case _, ok := <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return errors.New("parent never closed stdin")
		}
	}
}
