package rendernetns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// nsCommand makes the command that runs program inside one namespace, killed when ctx ends.
type nsCommand func(ctx context.Context, program string) *exec.Cmd

// inNamespace runs a program in the named namespace with ip netns exec (which execs it, so the
// process is the program itself and signals reach it).
func inNamespace(name string) nsCommand {
	return func(ctx context.Context, program string) *exec.Cmd {
		return exec.CommandContext(ctx, "ip", "netns", "exec", name, program)
	}
}

// child is the test binary re-executed in a namespace with a role, seen from the parent.
type child struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	events chan event
	stderr *lockedBuffer
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// startChild runs this test binary in a namespace with role and cfg. It is killed when ctx ends
// or the test ends, and its stderr is logged when the test fails or runs with -v.
func startChild(ctx context.Context, t *testing.T, in nsCommand, role string, cfg childConfig) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, name: role, events: make(chan event, 16), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	c.cmd = in(ctx, exe)
	c.cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(j))
	c.cmd.Stderr = c.stderr
	c.cmd.WaitDelay = 5 * time.Second // pipes left open by a killed child do not hold Wait
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if c.stdout, err = c.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	evr, evw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.ExtraFiles = []*os.File{evw} // descriptor 3 in the child
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.name, err)
	}
	_ = evw.Close()
	go func() {
		defer func() { _ = evr.Close() }()
		sc := bufio.NewScanner(evr)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("%s: bad event line %q: %v", c.name, sc.Text(), err)
				continue
			}
			c.events <- e
		}
		close(c.events)
	}()
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		for range c.events { // the reader ends with the child's descriptor 3
		}
		if (t.Failed() || testing.Verbose()) && c.stderr.String() != "" {
			t.Logf("%s stderr:\n%s", c.name, c.stderr.String())
		}
	})
	return c
}

// await waits for the child's next event of kind, skipping others, and decodes its data into v
// (if not nil).
func (c *child) await(ctx context.Context, kind string, v any) event {
	c.t.Helper()
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				<-c.exited
				c.t.Fatalf("%s exited (%v) before %s:\n%s", c.name, c.err, kind, c.stderr.String())
			}
			if e.Kind != kind {
				continue
			}
			if v != nil {
				if err := json.Unmarshal(e.Data, v); err != nil {
					c.t.Fatalf("%s %s: %v", c.name, kind, err)
				}
			}
			return e
		case <-ctx.Done():
			c.t.Fatalf("%s: waiting for %s: %v", c.name, kind, ctx.Err())
		}
	}
}

// wait checks that the child exits cleanly (a race report exits non-zero too).
func (c *child) wait(ctx context.Context) {
	c.t.Helper()
	select {
	case <-c.exited:
	case <-ctx.Done():
		c.t.Fatalf("%s did not exit: %v", c.name, ctx.Err())
	}
	if c.err != nil {
		c.t.Fatalf("%s: %v\n%s", c.name, c.err, c.stderr.String())
	}
}

// interrupt tells the child to stop (its context ends).
func (c *child) interrupt() { _ = c.cmd.Process.Signal(os.Interrupt) }

// bridge carries the signalling between two children: each one's stdout to the other's stdin.
// When a child's output ends, the other's input is closed (its Recv gets EOF); what cannot be
// delivered is drained so that a writer never blocks on a full pipe.
func bridge(a, b *child) {
	carry := func(dst io.WriteCloser, src io.Reader) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_, _ = io.Copy(io.Discard, src)
	}
	go carry(b.stdin, a.stdout)
	go carry(a.stdin, b.stdout)
}

// session is one render session between a consumer and a container in two namespaces.
type session struct {
	play, serve *child
}

// startSession starts the container (serve) and the consumer (play) and bridges their
// signalling; Play offers first, Serve answers.
func startSession(ctx context.Context, t *testing.T, consumer, container nsCommand, play, serve childConfig) *session {
	t.Helper()
	s := &session{serve: startChild(ctx, t, container, "serve", serve)}
	s.play = startChild(ctx, t, consumer, "play", play)
	bridge(s.play, s.serve)
	return s
}

// reports waits for both ends' reports and clean exits.
func (s *session) reports(ctx context.Context) (*playReport, *serveReport) {
	var pr playReport
	var sr serveReport
	s.play.await(ctx, "report", &pr)
	s.serve.await(ctx, "report", &sr)
	s.play.wait(ctx)
	s.serve.wait(ctx)
	return &pr, &sr
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
