// Package rendernetns runs whole render sessions (render.Serve and render.Play, VP8 through
// libvpx, GCC congestion control) between network namespaces, over real veth links that a test
// can block or throttle:
//
//   - fallback_test.go: the internal/netnstest topology, where consumer and container cannot
//     reach each other: the session connects through a render/turn relay, and fails without one;
//   - bandwidth_test.go: a routed topology of its own (routed_test.go) where they can, to compare
//     a direct session with a relayed one and to cut the container→consumer bandwidth mid-stream;
//     measure_test.go turns the consumer's per-frame record into the numbers it logs.
//
// The test binary re-executes itself inside a namespace with a role in its environment
// (roleEnv). A serve or play child speaks RenderSignal messages, length-prefixed as on
// /rendermesh/render/1.0.0, on its stdin and stdout; the parent copies the bytes between the two
// children. Every child writes its events (ready, first frame, its final report) as JSON lines on
// file descriptor 3 and logs on stderr.
package rendernetns

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Environment of a child: its role and its config (JSON).
const (
	roleEnv   = "RM_RENDER_NETNS_ROLE"
	configEnv = "RM_RENDER_NETNS_CONFIG"
)

// maxSignal is the largest RenderSignal accepted, as on /rendermesh/render/1.0.0.
const maxSignal = 64 << 10

// event is one line a child writes on its event descriptor.
type event struct {
	Kind string          `json:"kind"` // "ready", "first", "report", "stats"
	At   int64           `json:"at"`   // unix nanoseconds when it was written
	Data json.RawMessage `json:"data,omitempty"`
}

var roles = map[string]func(ctx context.Context, cfg childConfig, ev *events) error{
	"relay": runRelay,
	"serve": runServe,
	"play":  runPlay,
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// runChild runs one role, bounded by the config's Bound and ended early by SIGINT (the parent
// saying "stop"). It exits non-zero only when the harness itself broke (or the race detector
// found something): the role's outcome, errors included, is in its report.
func runChild(role string) int {
	run, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", roleEnv, role)
		return 2
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", configEnv, err)
		return 2
	}
	if cfg.Bound <= 0 {
		cfg.Bound = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Bound)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	ev := &events{w: os.NewFile(3, "events")}
	if err := run(ctx, cfg, ev); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

// childStart is when this process started, for the timestamps in logf.
var childStart = time.Now()

// logf writes a child's log line to stderr, stamped with the time since it started.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%7.3fs "+format+"\n", append([]any{time.Since(childStart).Seconds()}, args...)...)
}

// events writes a child's event lines.
type events struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *events) send(kind string, data any) error {
	ev := event{Kind: kind, At: time.Now().UnixNano()}
	if data != nil {
		j, err := json.Marshal(data)
		if err != nil {
			return err
		}
		ev.Data = j
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.w.Write(append(line, '\n'))
	return err
}

// stdio is a render.Signaller over this process's stdin and stdout: RenderSignal messages,
// length-prefixed as p2p.WriteMsg writes them.
type stdio struct {
	mu  sync.Mutex
	in  *bufio.Reader
	out io.Writer
}

func newStdio() *stdio { return &stdio{in: bufio.NewReader(os.Stdin), out: os.Stdout} }

func (s *stdio) Send(m *pb.RenderSignal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p2p.WriteMsg(s.out, m)
}

func (s *stdio) Recv() (*pb.RenderSignal, error) {
	m := &pb.RenderSignal{}
	if err := p2p.ReadMsg(s.in, m, maxSignal); err != nil {
		return nil, err
	}
	return m, nil
}
