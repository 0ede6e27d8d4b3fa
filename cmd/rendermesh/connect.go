package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/indexer"
	"github.com/rendermesh/rendermesh/roles/session"
)

// connectJSON is what `connect --json` prints.
type connectJSON struct {
	Matched     bool                    `json:"matched"`
	Container   string                  `json:"container,omitempty"`
	Indexer     string                  `json:"indexer,omitempty"`
	MatchMS     float64                 `json:"match_ms"`
	Price       string                  `json:"price,omitempty"` // per 15-minute session
	Reason      string                  `json:"reason,omitempty"`
	Detail      string                  `json:"detail,omitempty"`
	Epoch       uint64                  `json:"epoch"`
	IndexersMS  float64                 `json:"indexers_ms"` // finding and verifying the committee
	SessionID   string                  `json:"session_id,omitempty"`
	Units       uint32                  `json:"units,omitempty"`
	Start       string                  `json:"start,omitempty"`
	RTTEstimate uint32                  `json:"estimated_rtt_ms,omitempty"`
	Attempts    []consumer.Attempt      `json:"attempts"`
	Session     *consumer.SessionReport `json:"session,omitempty"`
	SessionErr  string                  `json:"session_error,omitempty"`
	Receipts    string                  `json:"receipts_file,omitempty"`
	// The render stream (with --play, while the session is held).
	FirstFrameMS    *float64           `json:"first_frame_ms,omitempty"`
	FrameLatencyP50 *float64           `json:"frame_latency_ms_p50,omitempty"`
	FrameLatencyP99 *float64           `json:"frame_latency_ms_p99,omitempty"`
	FPS             *float64           `json:"fps,omitempty"`
	BitrateKbps     *float64           `json:"bitrate_kbps,omitempty"`
	InputRTTP50     *float64           `json:"input_rtt_ms_p50,omitempty"`
	Relay           *bool              `json:"relay,omitempty"`
	Render          *render.PlayReport `json:"render,omitempty"`
	Resumed         []string           `json:"resumed_on,omitempty"` // containers that took over after one died
	ResumeErr       string             `json:"resume_error,omitempty"`
	RenderErr       string             `json:"render_error,omitempty"`
	StatsShared     *int               `json:"stats_shared,omitempty"` // session samples a checker took (--share-stats)
	StatsErr        string             `json:"stats_error,omitempty"`
}

func cmdConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", stderr)
	boot := bootstrapFlag(fs)
	config := fs.String("config", "", "a configuration file with the network's [network] genesis (env RENDERMESH_CONFIG)")
	req := &pb.MatchRequest{Hardware: &pb.HardwareRequirement{}}
	fs.StringVar(&req.App, "app", "", "the application to run, e.g. demo (required)")
	fs.StringVar(&req.Hardware.GpuModel, "gpu", "", "GPU model wanted, e.g. H100 (default any)")
	gpus := fs.Uint("gpus", 0, "at least this many GPUs of that model")
	gpuMem := fs.Uint64("gpu-memory-gib", 0, "at least this much memory per GPU, GiB")
	fs.BoolVar(&req.Hardware.Encoder, "encoder", false, "a hardware video encoder")
	geohash := fs.String("geohash", "", "where you are, as a geohash, e.g. u33dc0 (Berlin)")
	lat := fs.Float64("lat", 0, "where you are: latitude (with --lon)")
	lon := fs.Float64("lon", 0, "where you are: longitude (with --lat)")
	maxLatency := fs.Duration("max-latency", 0, "the longest round trip you accept, e.g. 80ms (0: any; needs a location)")
	budget := fs.String("budget", "", "the most you pay per 15-minute session, e.g. 0.5 (default any)")
	mode := fs.String("mode", "retail", "retail (a session now) or wholesale (a block booked ahead, --start)")
	start := fs.String("start", "", "wholesale: when the block starts, RFC 3339 or a delay such as 1h")
	sessions := fs.Uint("sessions", 1, "15-minute sessions to book")
	rank := fs.String("rank", "index", "ranking: index (overall evaluation), fee (lowest price) or experience")
	hold := fs.Duration("hold", 10*time.Second, "stay this long in the session before ending it (0: end at once)")
	play := fs.Bool("play", true, "play the render stream while the session is held (decoded headlessly, measured)")
	relayOnly := fs.Bool("relay", false, "force the render stream through a TURN relay")
	size := fs.String("size", "", "ask for this stream size, e.g. 1280x720 (default the container's)")
	fps := fs.Uint("fps", 0, "ask for this frame rate (default the container's)")
	loopback := fs.Bool("loopback", false, "offer loopback ICE candidates (a container on this machine)")
	shareStats := fs.Bool("share-stats", false, "consent to checks during the session: send samples of the stream's statistics, signed, to the container's assigned checker (asks for 30 frames/s unless --fps says otherwise)")
	statsEvery := fs.Duration("stats-every", node.DefaultStatsEvery, "with --share-stats, sample the stream this often (at least 5s)")
	matchOnly := fs.Bool("match-only", false, "get matched and stop: no session, the reservation lapses")
	dataDir := fs.String("data-dir", defaultConsumerDir(), "where the consumer keeps its co-signed usage receipts and a checkpoint of the epochs it verified")
	attemptTimeout := fs.Duration("attempt-timeout", consumer.DefaultAttemptTimeout, "give up on an indexer after this long and ask the next")
	attempts := fs.Int("attempts", consumer.DefaultMaxAttempts, "ask at most this many indexers")
	asJSON := fs.Bool("json", false, "print a JSON object")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long (plus --hold)")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if req.App == "" {
		return fmt.Errorf("%w: --app is required, e.g. --app demo", errUsage)
	}
	if *shareStats && *statsEvery < node.MinStatsEvery {
		return fmt.Errorf("%w: --stats-every %v: at least %v", errUsage, *statsEvery, node.MinStatsEvery)
	}
	nc, err := loadElections(*config)
	if err != nil {
		return err
	}
	req.Hardware.MinGpus = uint32(*gpus)
	req.Hardware.MinGpuMemoryBytes = *gpuMem << 30
	req.MaxLatencyMs = uint32(maxLatency.Milliseconds())
	req.Sessions = uint32(*sessions)
	latLonSet := false
	fs.Visit(func(f *flag.Flag) { latLonSet = latLonSet || f.Name == "lat" || f.Name == "lon" })
	switch {
	case latLonSet:
		if *lat < -90 || *lat > 90 || *lon < -180 || *lon > 180 {
			return fmt.Errorf("%w: --lat must be within ±90 and --lon within ±180", errUsage)
		}
		la, lo := int32(*lat*1e6), int32(*lon*1e6)
		req.Location = &pb.Location{HasCoordinates: true, LatitudeE6: la, LongitudeE6: lo, Geohash: container.EncodeGeohash(la, lo, 6)}
	case *geohash != "":
		req.Location = &pb.Location{Geohash: strings.ToLower(*geohash)}
	}
	if *budget != "" {
		if req.BudgetMicros, err = node.ParseAmount(*budget); err != nil {
			return fmt.Errorf("%w: --budget: %v", errUsage, err)
		}
	}
	switch *mode {
	case "retail":
		req.Mode = pb.ServiceMode_SERVICE_MODE_RETAIL
	case "wholesale":
		req.Mode = pb.ServiceMode_SERVICE_MODE_WHOLESALE
		if *start == "" {
			return fmt.Errorf("%w: --mode wholesale needs --start (RFC 3339, or a delay such as 1h)", errUsage)
		}
		t, err := parseStart(*start, time.Now())
		if err != nil {
			return fmt.Errorf("%w: --start: %v", errUsage, err)
		}
		req.StartUnixMs = t.UnixMilli()
	default:
		return fmt.Errorf("%w: --mode %q: want retail or wholesale", errUsage, *mode)
	}
	switch *rank {
	case "index":
		req.Ranking = pb.Ranking_RANKING_INDEX
	case "fee":
		req.Ranking = pb.Ranking_RANKING_FEE
	case "experience":
		req.Ranking = pb.Ranking_RANKING_EXPERIENCE
	default:
		return fmt.Errorf("%w: --rank %q: want index, fee or experience", errUsage, *rank)
	}
	req.RequestId = node.NewRequestID()
	if err := indexer.ValidateRequest(req); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	o := node.ConnectOptions{Network: nc, Hold: *hold,
		Attempt: consumer.ConnectOptions{AttemptTimeout: *attemptTimeout, MaxAttempts: *attempts},
		Resume:  true,
		Render:  node.RenderOptions{Play: *play && *hold > 0, RelayOnly: *relayOnly, FPS: int(*fps), Loopback: *loopback, Pointer: true}}
	if *shareStats {
		o.ShareStats, o.StatsEvery = true, *statsEvery
		if o.Render.FPS == 0 {
			o.Render.FPS = 30 // samples are judged against the rate asked
		}
	}
	if *size != "" {
		if _, err := fmt.Sscanf(*size, "%dx%d", &o.Render.Width, &o.Render.Height); err != nil || o.Render.Width < 16 || o.Render.Height < 16 {
			return fmt.Errorf("%w: --size %q: want WIDTHxHEIGHT, e.g. 1280x720", errUsage, *size)
		}
	}
	out := connectJSON{Attempts: []consumer.Attempt{}}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if *matchOnly {
		o.Hold = -1
	} else {
		out.Receipts = filepath.Join(*dataDir, "receipts.log")
		lg, err := session.Open(out.Receipts)
		if err != nil {
			return err
		}
		defer lg.Close()
		o.Keep = lg.Append
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout+max(*hold, 0))
	defer cancel()
	lc, err := node.NewLightClient(ctx, node.LightOptions{Bootstrap: boot.peers(), Timeout: *timeout, StateDir: *dataDir})
	if err != nil {
		return err
	}
	defer lc.Close()
	res, err := lc.Connect(ctx, req, o)
	if err != nil && res.Match == nil {
		return err
	}
	m := res.Match
	out.IndexersMS = ms(res.IndexersDur)
	out.Matched, out.MatchMS, out.Reason, out.Detail, out.Epoch = m.Matched, ms(m.Took), m.Reason, m.Detail, m.Epoch
	out.Attempts = append(out.Attempts, m.Attempts...)
	for i := range out.Attempts {
		out.Attempts[i].Indexer = peer.ID(out.Attempts[i].Indexer).String()
	}
	if m.Indexer != "" {
		out.Indexer = peer.ID(m.Indexer).String()
	}
	if m.Matched {
		tk := m.Ticket
		out.Container = peer.ID(m.Container).String()
		out.Price = node.FormatAmount(tk.PriceMicros)
		out.SessionID = hex.EncodeToString(tk.SessionId)
		out.Units, out.RTTEstimate = tk.Units, tk.EstimatedRttMs
		out.Start = time.UnixMilli(tk.StartUnixMs).UTC().Format(time.RFC3339)
	}
	out.Session = res.Session
	if res.SessionErr != nil {
		out.SessionErr = res.SessionErr.Error()
	}
	if r := res.Render; r != nil {
		out.Render = r
		if r.FramesStamped > 0 {
			ff, p50, p99, rtt := ms(r.FirstFrame), ms(r.LatencyP50), ms(r.LatencyP99), ms(r.InputRTTP50)
			out.FirstFrameMS, out.FrameLatencyP50, out.FrameLatencyP99, out.InputRTTP50 = &ff, &p50, &p99, &rtt
		}
		out.FPS, out.BitrateKbps, out.Relay = &r.FPS, &r.BitrateKbps, &r.Relay
	}
	if res.RenderErr != nil {
		out.RenderErr = res.RenderErr.Error()
	}
	for _, c := range res.Resumed {
		out.Resumed = append(out.Resumed, peer.ID(c).String())
	}
	if res.ResumeErr != nil {
		out.ResumeErr = res.ResumeErr.Error()
	}
	if o.ShareStats {
		out.StatsShared = &res.StatsShared
		if res.StatsErr != nil {
			out.StatsErr = res.StatsErr.Error()
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printConnect(stdout, out)
	}
	switch {
	case err != nil:
		return err
	case !m.Matched:
		return fmt.Errorf("not matched: %s", m.Reason)
	case res.SessionErr != nil:
		return res.SessionErr
	case res.RenderErr != nil:
		return fmt.Errorf("render: %w", res.RenderErr)
	case o.Render.Play && (res.Render == nil || res.Render.FramesStamped == 0):
		return fmt.Errorf("render: no frame arrived while the session was held")
	}
	return nil
}

func printConnect(w io.Writer, out connectJSON) {
	if !out.Matched {
		fmt.Fprintf(w, "not matched after %d attempt(s), %.0f ms: %s\n  %s\n", len(out.Attempts), out.MatchMS, out.Reason, out.Detail)
		return
	}
	fmt.Fprintf(w, "matched in %.0f ms (epoch %d, %d attempt(s))\n  container %s\n  indexer   %s\n  price     %s per 15-minute session, %d session(s) from %s, est. round trip %d ms\n",
		out.MatchMS, out.Epoch, len(out.Attempts), out.Container, out.Indexer, out.Price, out.Units, out.Start, out.RTTEstimate)
	if s := out.Session; s != nil && s.Accepted {
		fmt.Fprintf(w, "  session   %s: %d co-signed receipt(s), %d minute(s), %s charged; receipts in %s\n",
			out.SessionID, s.Receipts, s.Minutes, node.FormatAmount(s.Amount), out.Receipts)
	}
	if out.SessionErr != "" {
		fmt.Fprintf(w, "  session failed: %s\n", out.SessionErr)
	}
	if r := out.Render; r != nil && out.FirstFrameMS != nil {
		path := "direct"
		if r.Relay {
			path = "relayed"
		}
		fmt.Fprintf(w, "  stream    %dx%d, first frame after %.0f ms, %.1f fps, %.0f kbit/s, frame latency p50 %.1f / p99 %.1f ms, input round trip %.1f ms, %s\n",
			r.Width, r.Height, *out.FirstFrameMS, r.FPS, r.BitrateKbps, *out.FrameLatencyP50, *out.FrameLatencyP99, *out.InputRTTP50, path)
	}
	if out.RenderErr != "" {
		fmt.Fprintf(w, "  stream failed: %s\n", out.RenderErr)
	}
}

// parseStart reads an RFC 3339 time or a delay from now.
func parseStart(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-01-02T15:04:05Z) or a delay such as 1h", s)
	}
	return t, nil
}

func defaultConsumerDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".rendermesh", "consumer")
	}
	return "rendermesh-consumer"
}
