package netnstest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// child is the test binary re-executed in a namespace with a role, seen from the parent.
type child struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// startChild runs this test binary in namespace ns with role and extra environment. It is
// killed when ctx ends or the test ends, and its stderr is logged if the test fails (or runs with -v).
func startChild(ctx context.Context, t *testing.T, n *Net, ns, role string, env ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, name: role + "@" + ns, lines: make(chan string, 16), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	c.cmd = n.CommandContext(ctx, ns, exe)
	c.cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	c.cmd.Stderr = c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		if (t.Failed() || testing.Verbose()) && c.stderr.String() != "" {
			t.Logf("%s stderr:\n%s", c.name, c.stderr.String())
		}
	})
	return c
}

func (c *child) send(word, payload string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, word+" "+payload+"\n"); err != nil {
		c.t.Fatalf("write to %s: %v", c.name, err)
	}
}

// expect returns the payload of the child's next line, which must start with word.
func (c *child) expect(ctx context.Context, word string) string {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.exited
			c.t.Fatalf("%s exited (%v) before %s:\n%s", c.name, c.err, word, c.stderr.String())
		}
		got, payload, _ := strings.Cut(line, " ")
		if got != word {
			c.t.Fatalf("%s said %q, want %s", c.name, line, word)
		}
		return payload
	case <-ctx.Done():
		c.t.Fatalf("%s: waiting for %s: %v", c.name, word, ctx.Err())
	}
	return ""
}

// finish closes the child's stdin (telling it to stop) and checks that it exits cleanly (a race
// report exits non-zero too).
func (c *child) finish(ctx context.Context) {
	c.t.Helper()
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-ctx.Done():
		c.t.Fatalf("%s did not exit: %v", c.name, ctx.Err())
	}
	if c.err != nil {
		c.t.Fatalf("%s: %v\n%s", c.name, c.err, c.stderr.String())
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
