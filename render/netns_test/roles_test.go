package rendernetns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/render/turn"
)

// childConfig is what the parent tells a child (as JSON in configEnv).
type childConfig struct {
	// Bound ends the child whatever happens (a failure never hangs CI).
	Bound time.Duration `json:"bound"`

	// relay
	Secret  []byte `json:"secret,omitempty"`
	RelayIP string `json:"relayIP,omitempty"`

	// serve and play
	ICEServers []turn.ICEServer `json:"iceServers,omitempty"`
	RelayOnly  bool             `json:"relayOnly,omitempty"`
	Width      int              `json:"width,omitempty"`
	Height     int              `json:"height,omitempty"`
	FPS        int              `json:"fps,omitempty"`
	Threads    int              `json:"threads,omitempty"`
	// Hold is how long the consumer plays (0: until SIGINT or Bound).
	Hold time.Duration `json:"hold,omitempty"`
	// Watch is the consumer's address polling interval (PlayOptions.WatchNetwork; 0: off).
	Watch time.Duration `json:"watch,omitempty"`
}

func (c childConfig) peer() render.PeerOptions {
	o := render.PeerOptions{RelayOnly: c.RelayOnly} // Loopback false: real veth addresses only
	for _, s := range c.ICEServers {
		o.ICEServers = append(o.ICEServers, &pb.IceServer{Urls: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return o
}

// relayReady is the relay's "ready" event.
type relayReady struct {
	URLs []string `json:"urls"`
}

// runRelay runs the embedded render/turn relay on all of the namespace's addresses, advertising
// (and binding relay sockets on) cfg.RelayIP. It serves until stdin closes, then reports its
// stats.
func runRelay(ctx context.Context, cfg childConfig, ev *events) error {
	s, err := turn.Listen(turn.Config{ListenUDP: "0.0.0.0:3478", RelayIP: net.ParseIP(cfg.RelayIP), Secret: cfg.Secret})
	if err != nil {
		return err
	}
	if err := ev.send("ready", relayReady{URLs: s.URLs("")}); err != nil {
		return err
	}
	closed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
	}
	if err := s.Close(); err != nil {
		return err
	}
	return ev.send("stats", s.Stats())
}

// serveReport is the serve child's "report" event.
type serveReport struct {
	Report  *render.StreamReport `json:"report,omitempty"`
	Err     string               `json:"err,omitempty"`
	Logs    []logRecord          `json:"logs"`
	Traffic []counters           `json:"traffic"`
}

// runServe reads the consumer's first offer from stdin, streams with render.Serve until the
// session ends, and reports.
func runServe(ctx context.Context, cfg childConfig, ev *events) error {
	sig := newStdio()
	first, err := sig.Recv()
	if err != nil {
		return fmt.Errorf("first offer: %w", err)
	}
	if first.GetOffer() == nil {
		return fmt.Errorf("first message is not an offer: %v", first)
	}
	logs := &recorder{}
	traffic := sampleTraffic(ctx)
	rep, err := render.Serve(ctx, sig, first.GetOffer(), render.StreamOptions{
		PeerOptions: cfg.peer(),
		Width:       cfg.Width, Height: cfg.Height, FPS: cfg.FPS, Threads: cfg.Threads,
		Log: slog.New(logs),
	})
	out := serveReport{Report: rep, Logs: logs.all(), Traffic: traffic()}
	if err != nil {
		out.Err = err.Error()
	}
	logf("serve: %v %+v", err, rep)
	return ev.send("report", out)
}

// frameRecord is one decoded frame as the consumer saw it.
type frameRecord struct {
	At      int64  `json:"at"`  // unix nanoseconds, decoded
	N       uint32 `json:"n"`   // frame number from the stamp
	Latency int64  `json:"lat"` // nanoseconds, render (stamp) to decoded
	OK      bool   `json:"ok"`  // the stamp was valid
	W       int    `json:"w"`
	H       int    `json:"h"`
}

// playReport is the play child's "report" event: render.PlayReport with the durations its JSON
// leaves out, the error, and every frame.
type playReport struct {
	Report     *render.PlayReport `json:"report,omitempty"`
	FirstFrame time.Duration      `json:"firstFrame"`
	LatencyP50 time.Duration      `json:"latencyP50"`
	LatencyP99 time.Duration      `json:"latencyP99"`
	Began      int64              `json:"began"` // unix nanoseconds, Play called
	Ended      int64              `json:"ended"` // unix nanoseconds, Play returned
	Err        string             `json:"err,omitempty"`
	Frames     []frameRecord      `json:"frames"`
	Logs       []logRecord        `json:"logs"`
	Traffic    []counters         `json:"traffic"`
}

// runPlay plays the stream with render.Play for cfg.Hold (or until SIGINT), recording every
// decoded frame, announces the first stamped frame and reports.
func runPlay(ctx context.Context, cfg childConfig, ev *events) error {
	if cfg.Hold > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Hold)
		defer cancel()
	}
	var (
		mu     sync.Mutex
		frames []frameRecord
		first  sync.Once
	)
	logs := &recorder{}
	traffic := sampleTraffic(ctx)
	began := time.Now()
	rep, err := render.Play(ctx, newStdio(), render.PlayOptions{
		PeerOptions: cfg.peer(),
		Width:       cfg.Width, Height: cfg.Height, FPS: cfg.FPS,
		Began:        began,
		WatchNetwork: cfg.Watch,
		Log:          slog.New(logs),
		OnFrame: func(img *image.YCbCr, n uint32, lat time.Duration, ok bool) {
			now := time.Now()
			mu.Lock()
			frames = append(frames, frameRecord{At: now.UnixNano(), N: n, Latency: int64(lat), OK: ok, W: img.Rect.Dx(), H: img.Rect.Dy()})
			mu.Unlock()
			if ok {
				first.Do(func() { _ = ev.send("first", nil) })
			}
		},
	})
	ended := time.Now()
	mu.Lock()
	out := playReport{Report: rep, Began: began.UnixNano(), Ended: ended.UnixNano(), Frames: frames, Logs: logs.all(), Traffic: traffic()}
	mu.Unlock()
	if rep != nil {
		out.FirstFrame, out.LatencyP50, out.LatencyP99 = rep.FirstFrame, rep.LatencyP50, rep.LatencyP99
	}
	if err != nil {
		out.Err = err.Error()
	}
	logf("play: %v after %v", err, ended.Sub(began))
	return ev.send("report", out)
}

// logRecord is one log record of the render package (connection states, resolution steps).
type logRecord struct {
	At    int64             `json:"at"`
	Msg   string            `json:"msg"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

// recorder is a slog.Handler that keeps every record (and echoes it to stderr).
type recorder struct {
	mu   sync.Mutex
	recs []logRecord
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	lr := logRecord{At: rec.Time.UnixNano(), Msg: rec.Message, Attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		lr.Attrs[a.Key] = a.Value.String()
		return true
	})
	logf("%s %s %v", rec.Level, rec.Message, lr.Attrs)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, lr)
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) all() []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logRecord(nil), r.recs...)
}

// counters is this namespace's traffic at one moment: bytes over every interface but loopback.
type counters struct {
	At      int64 `json:"at"`
	RxBytes int64 `json:"rx"`
	TxBytes int64 `json:"tx"`
}

// trafficInterval is how often a child samples its namespace's interface counters.
const trafficInterval = 250 * time.Millisecond

// sampleTraffic samples the namespace's interface counters every trafficInterval until ctx ends
// or the returned function is called; that function returns the samples.
func sampleTraffic(ctx context.Context) func() []counters {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu      sync.Mutex
		samples []counters
	)
	done := make(chan struct{})
	take := func() {
		c, err := readCounters()
		if err != nil {
			return
		}
		mu.Lock()
		samples = append(samples, c)
		mu.Unlock()
	}
	go func() {
		defer close(done)
		t := time.NewTicker(trafficInterval)
		defer t.Stop()
		take()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				take()
			}
		}
	}()
	return func() []counters {
		cancel()
		<-done
		take()
		mu.Lock()
		defer mu.Unlock()
		return append([]counters(nil), samples...)
	}
}

// readCounters sums /proc/self/net/dev (this process's network namespace) over every interface
// but loopback.
func readCounters() (counters, error) {
	f, err := os.Open("/proc/self/net/dev")
	if err != nil {
		return counters{}, err
	}
	defer func() { _ = f.Close() }()
	c := counters{At: time.Now().UnixNano()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 9 {
			continue
		}
		rx, err1 := strconv.ParseInt(fields[0], 10, 64)
		tx, err2 := strconv.ParseInt(fields[8], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return counters{}, err
		}
		c.RxBytes += rx
		c.TxBytes += tx
	}
	return c, sc.Err()
}
