package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/roles/container"
)

// devnetSummary is the object `devnet --json` prints. Later releases add fields.
type devnetSummary struct {
	Nodes           int            `json:"nodes"`
	Containers      int            `json:"containers"`
	ContainersFound int            `json:"containers_found"`
	Queries         int            `json:"queries"`
	QueryFailures   int            `json:"query_failures"`
	QueryMSP50      float64        `json:"query_ms_p50"`
	QueryMSP99      float64        `json:"query_ms_p99"`
	ConvergedMS     float64        `json:"converged_ms"`
	StartMS         float64        `json:"start_ms"`
	States          map[string]int `json:"states"`
	RSSBytes        uint64         `json:"rss_bytes"`
	RSSPerNode      uint64         `json:"rss_bytes_per_node"`
	Goroutines      int            `json:"goroutines"`
	WallSeconds     float64        `json:"wall_seconds"`
	Metrics         string         `json:"metrics,omitempty"`
	// Epochs (issue 4): the current epoch, the size of the committee that serves it, and the share
	// of nodes that hold the same committee. committee_epoch is the epoch that committee was drawn
	// for: the current one, or an earlier one when the current epoch drew nobody.
	Epoch            uint64  `json:"epoch"`
	CommitteeEpoch   uint64  `json:"committee_epoch"`
	Indexers         int     `json:"indexers"`
	IndexerAgreement float64 `json:"indexer_agreement"`
	LightIndexers    int     `json:"light_client_indexers"`
	// Matchmaking (issue 5): consumer requests from every region through the light client, each
	// held as a session that is opened and ended at once.
	Matches           int            `json:"matches"`
	MatchSuccessRatio float64        `json:"match_success_ratio"`
	MatchMSP50        float64        `json:"match_ms_p50"`
	MatchMSP99        float64        `json:"match_ms_p99"`
	MatchRefused      map[string]int `json:"match_refused,omitempty"`
	Sessions          int            `json:"sessions"`
	Receipts          int            `json:"receipts"`
	// The render path (issue 6): each session plays its stream for a few seconds; every third one
	// is forced through the relay (node 0).
	Rendered        int            `json:"rendered_sessions"`
	FirstFrameMSP50 float64        `json:"first_frame_ms_p50"`
	FrameLatencyP50 float64        `json:"frame_latency_ms_p50"`
	RelaySessions   int            `json:"relay_sessions"`
	RenderFailures  map[string]int `json:"render_failures,omitempty"`
	// Checkers (issue 7): checker nodes, the attestations they gossiped and what came of them.
	Checkers                 int            `json:"checkers"`
	Attestations             int            `json:"attestations"`
	AttestationDeliveryRatio float64        `json:"attestation_delivery_ratio"`
	AttestationMSP50         float64        `json:"attestation_ms_p50"`
	AttestationMSP99         float64        `json:"attestation_ms_p99"`
	Cheaters                 int            `json:"cheaters"`
	CheatersCaught           int            `json:"cheaters_caught"`
	FalsePositives           int            `json:"false_positives"`
	FalsePositiveChecks      map[string]int `json:"false_positive_checks,omitempty"`
	Excluded                 int            `json:"excluded"`
	AttestationRootsAgree    bool           `json:"attestation_roots_agree"`
	CheckedMS                float64        `json:"checked_ms"` // start to every container's registration check done (-1: not all)
	// Checks run again because they failed on timing (a failure is attested only when it
	// repeats), and checks measured while the machine could not keep up (docs/CHECKERS.md).
	CheckConfirmations int `json:"check_confirmations"`
	ChecksOverloaded   int `json:"checks_overloaded"`
	// Checks during sessions: with checkers, the devnet's consumers share their sessions'
	// statistics. The samples the checkers took and refused (their /v1/status, summed), the
	// honest containers a session sample failed (among false_positives), and the devnet sessions
	// whose sharing failed (the last reason).
	SessionSamples        int    `json:"session_samples"`
	SessionSamplesRefused int    `json:"session_samples_refused"`
	SessionFalsePositives int    `json:"session_false_positives"`
	SessionStatsErrors    int    `json:"session_stats_errors"`
	SessionStatsLastError string `json:"session_stats_last_error,omitempty"`
}

// devnetGCPercent is the devnet's garbage collection target, unless GOGC says otherwise.
const devnetGCPercent = 200

func cmdDevnet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("devnet", stderr)
	nodes := fs.Int("nodes", 30, "number of nodes (about two thirds of them containers)")
	duration := fs.Duration("duration", 0, "run this long, then print the summary and exit (0: until interrupted)")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object on stdout")
	admin := fs.String("admin", "127.0.0.1:9464", "serve /metrics of the whole devnet here (empty: off)")
	logLevel := fs.String("log-level", "error", "nodes' log level")
	dir := fs.String("dir", "", "keep the nodes' data directories here (default: a temporary directory, removed at exit)")
	converge := fs.Duration("converge-timeout", 2*time.Minute, "give up waiting for convergence after this long")
	epochLen := fs.Duration("epoch", 10*time.Second, "epoch length (indexer elections)")
	web := fs.String("web", "", "serve the web client from node 0 here, e.g. 127.0.0.1:8080 (empty: off)")
	committee := fs.Uint("committee", 0, "expected indexer seats per epoch (default: a fifth of the nodes, at least 6: an epoch draws nobody with probability e^-seats)")
	stream := fs.String("stream", "640x360", "the size each devnet session streams, e.g. 1280x720")
	streamFPS := fs.Int("stream-fps", 30, "the frame rate each devnet session asks for; with checkers, its consumers' session statistics are judged against it (lower it on a machine too slow to stream it)")
	relay := fs.Bool("relay", true, "make node 0 a TURN relay; every third session is forced through it")
	checkers := fs.Int("checkers", 4, "nodes running the checker role (0: none; containers then pass their registration check by dev autocheck)")
	checkFPS := fs.Int("check-fps", 30, "the frame rate checkers ask of a challenge stream (lower it on a machine too slow to render many streams at once)")
	checkMethods := fs.String("check-methods", "telemetry,simulation", "the checks' methods, in order: telemetry (signed NVML readings), simulation (a challenge render session)")
	cheaters := fs.Int("cheaters", 4, "containers that cheat their checks (a better GPU claimed, half the frame rate, replayed frames, going silent), in turn")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole devnet to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	var sw, sh int
	if _, err := fmt.Sscanf(*stream, "%dx%d", &sw, &sh); err != nil || sw < 16 || sh < 16 || sw%2 != 0 || sh%2 != 0 {
		return fmt.Errorf("%w: --stream %q: want an even WIDTHxHEIGHT, e.g. 640x360", errUsage, *stream)
	}
	if *streamFPS < 1 || *streamFPS > 120 {
		return fmt.Errorf("%w: --stream-fps must be 1 to 120", errUsage)
	}
	if *nodes < 2 {
		return fmt.Errorf("%w: --nodes must be at least 2", errUsage)
	}
	if *checkers < 0 || *cheaters < 0 {
		return fmt.Errorf("%w: --checkers and --cheaters must not be negative", errUsage)
	}
	cc := node.DefaultChecker()
	cc.Recheck, cc.RandomEvery, cc.FPS = node.Duration(10*time.Second), 3, *checkFPS
	cc.Methods = strings.Split(*checkMethods, ",")
	if *checkers > 0 {
		if err := cc.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if *duration < 0 {
		return fmt.Errorf("%w: --duration must not be negative", errUsage)
	}
	if *epochLen < time.Second {
		return fmt.Errorf("%w: --epoch must be at least 1s", errUsage)
	}
	logger, err := node.NewLogger(node.LogConfig{Level: *logLevel, Format: "text"}, stderr)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	stopCPU, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopCPU()
	if os.Getenv("GOGC") == "" {
		// A devnet is many nodes in one process, short of CPU long before memory: collecting
		// garbage half as often costs 30 nodes about 150 MB and gives back 12% of the CPU
		// (docs/BENCHMARKS.md). GOGC in the environment overrides it.
		debug.SetGCPercent(devnetGCPercent)
	}
	progress := func(string) {}
	if isTerminal(stderr) || !*asJSON {
		progress = func(s string) { fmt.Fprintln(stderr, "devnet:", s) }
	}
	began := time.Now()
	progress(fmt.Sprintf("starting %d nodes on loopback", *nodes))
	d, err := node.StartDevnet(ctx, node.DevnetConfig{Nodes: *nodes, Dir: *dir, Admin: *admin, Logger: logger, Progress: progress, Epoch: *epochLen, Relay: *relay, Web: *web, StreamWidth: sw, StreamHeight: sh, StreamFPS: *streamFPS, Committee: uint32(*committee),
		Checkers: *checkers, Cheaters: *cheaters, Checker: &cc})
	if err != nil {
		return err
	}
	defer d.Close()
	if d.MetricsAddr() != "" {
		progress("metrics at http://" + d.MetricsAddr() + "/metrics")
	}
	if a := d.Nodes[0].AdminAddr(); a != "" {
		progress("web client at http://" + a + "/")
	}
	if addrs := d.Nodes[0].Net().Addrs(); len(addrs) > 0 {
		boot := addrs[0].String()
		if !strings.Contains(boot, "/p2p/") {
			boot += "/p2p/" + d.Nodes[0].Net().ID().String()
		}
		// Beside network.toml, so that scripts find it.
		if err := os.WriteFile(filepath.Join(filepath.Dir(d.NetworkFile()), "bootstrap.txt"), []byte(boot+"\n"), 0o644); err != nil {
			return err
		}
		progress("connect with: rendermesh connect --bootstrap " + boot + " --config " + d.NetworkFile() + " --app demo --loopback")
	}

	sum := devnetSummary{Nodes: *nodes, Containers: len(d.Containers()), Metrics: d.MetricsAddr(),
		StartMS: ms(d.StartDuration()), ConvergedMS: -1}
	conv, err := d.WaitConverged(ctx, *converge)
	if err == nil {
		sum.ConvergedMS = ms(conv)
		progress(fmt.Sprintf("converged: a light client finds all %d containers, %s after start", sum.Containers, conv.Round(time.Millisecond)))
	} else if ctx.Err() == nil {
		progress(err.Error())
	}
	sum.CheckedMS = -1
	if *checkers > 0 {
		if took, err := d.WaitChecked(ctx, *converge); err == nil {
			sum.CheckedMS = ms(took)
			progress(fmt.Sprintf("checked: every container's registration check is done, %s after start", took.Round(time.Millisecond)))
		} else if ctx.Err() == nil {
			progress(err.Error())
		}
	}

	// Query rounds until the duration is up (or until interrupted), at most one round a second.
	var stop <-chan time.Time
	if *duration > 0 {
		stop = time.After(time.Until(began.Add(*duration)))
	}
	var st node.QueryStats
	var mst node.MatchStats
	qs := d.Queries()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	rounds := 0
loop:
	for {
		d.RunQueries(ctx, qs, &st)
		d.RunMatches(ctx, &mst)
		rounds++
		if isTerminal(stderr) {
			fmt.Fprintf(stderr, "\rdevnet: %d query rounds, %d queries, %d/%d containers found, p50 %.1f ms   ",
				rounds, len(st.Latencies), len(st.Found), sum.Containers, ms(node.Percentile(st.Latencies, 50)))
		}
		select {
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		case <-tick.C:
		}
		if *duration > 0 && time.Since(began) >= *duration {
			break
		}
	}
	if isTerminal(stderr) {
		fmt.Fprintln(stderr)
	}
	sum.Queries = len(st.Latencies)
	sum.QueryFailures = st.Failed
	sum.ContainersFound = len(st.Found)
	sum.QueryMSP50 = ms(node.Percentile(st.Latencies, 50))
	sum.QueryMSP99 = ms(node.Percentile(st.Latencies, 99))
	sum.States = map[string]int{}
	for g, c := range d.States() {
		sum.States[string(g)] = c
	}
	// The nodes' view and the light client's, of the same epoch: a lookup that fails (a record not
	// out yet, a loaded machine) or that straddles an epoch boundary is tried again, as a client would.
	for try := 0; try < 4 && ctx.Err() == nil; try++ {
		es := d.Epochs()
		sum.Epoch, sum.CommitteeEpoch, sum.Indexers, sum.IndexerAgreement = es.Epoch, es.DrawnIn, es.Indexers, es.Agreement
		ix, err := d.Light.Indexers(ctx, d.Network(), d.Stakes())
		if err == nil && d.Light.Epoch(d.Network()) == es.Epoch {
			sum.LightIndexers = len(ix)
			break
		}
		if err != nil {
			progress("light client: indexers: " + err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	sum.Matches, sum.MatchSuccessRatio, sum.MatchRefused = mst.Matches, mst.SuccessRatio(), mst.Refused
	sum.MatchMSP50 = ms(node.Percentile(mst.Latencies, 50))
	sum.MatchMSP99 = ms(node.Percentile(mst.Latencies, 99))
	sum.Sessions, sum.Receipts = mst.Sessions, mst.Receipts
	sum.Rendered, sum.RelaySessions, sum.RenderFailures = mst.Rendered, mst.RelaySessions, mst.RenderFailures
	sum.FirstFrameMSP50 = ms(node.Percentile(mst.FirstFrames, 50))
	sum.FrameLatencyP50 = ms(node.Percentile(mst.FrameLatencies, 50))
	cr := d.CheckOutcome()
	sum.Checkers, sum.Attestations, sum.AttestationDeliveryRatio = d.CheckerCount(), cr.Attestations, cr.DeliveryRatio
	sum.AttestationMSP50, sum.AttestationMSP99 = ms(cr.DelayP50), ms(cr.DelayP99)
	sum.Cheaters, sum.CheatersCaught, sum.FalsePositives, sum.Excluded = cr.Cheaters, cr.CheatersCaught, cr.FalsePositives, cr.Excluded
	sum.FalsePositiveChecks = cr.FalsePositiveChecks
	sum.AttestationRootsAgree = cr.RootsAgree
	sum.CheckConfirmations, sum.ChecksOverloaded = cr.Confirmations, cr.Overloaded
	sum.SessionSamples, sum.SessionSamplesRefused, sum.SessionFalsePositives = cr.SessionSamples, cr.SessionRefused, cr.SessionFalsePositives
	sum.SessionStatsErrors, sum.SessionStatsLastError = mst.StatsErrors, mst.StatsLastErr
	sum.RSSBytes = node.RSSBytes()
	sum.RSSPerNode = sum.RSSBytes / uint64(*nodes)
	sum.Goroutines = node.Goroutines()
	sum.WallSeconds = time.Since(began).Seconds()

	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(sum)
	}
	fmt.Fprintf(stdout, `devnet summary
  nodes              %d (%d containers)
  start-up           %.0f ms for all nodes
  converged          %.0f ms after start
  containers found   %d of %d by a light client's capability queries
  queries            %d (%d failed), p50 %.1f ms, p99 %.1f ms
  states             ready %d, busy %d, offline %d, setting up %d
  memory             %d MiB RSS (%d KiB per node), %d goroutines
  epoch              %d: %d indexers (drawn for epoch %d), agreement %.2f; the light client verified %d
  matches            %d, %.0f%% matched, p50 %.1f ms, p99 %.1f ms; %d sessions, %d co-signed receipts
  render             %d sessions streamed (%d through the relay), first frame p50 %.0f ms, frame latency p50 %.1f ms
  checks             %d checkers, %d attestations (delivered %.1f%%, p99 %.0f ms); cheaters caught %d of %d, %d excluded; false positives %d
                     %d timing failures checked again, %d checks measured on an overloaded machine
  session checks     %d samples taken (%d refused), %d sessions failed to share; %d honest containers failed a session sample
`, sum.Nodes, sum.Containers, sum.StartMS, sum.ConvergedMS, sum.ContainersFound, sum.Containers,
		sum.Queries, sum.QueryFailures, sum.QueryMSP50, sum.QueryMSP99,
		sum.States[string(container.GroupReady)], sum.States[string(container.GroupBusy)],
		sum.States[string(container.GroupOffline)], sum.States[string(container.GroupSettingUp)],
		sum.RSSBytes>>20, sum.RSSPerNode>>10, sum.Goroutines, sum.Epoch, sum.Indexers, sum.CommitteeEpoch, sum.IndexerAgreement, sum.LightIndexers,
		sum.Matches, 100*sum.MatchSuccessRatio, sum.MatchMSP50, sum.MatchMSP99, sum.Sessions, sum.Receipts,
		sum.Rendered, sum.RelaySessions, sum.FirstFrameMSP50, sum.FrameLatencyP50,
		sum.Checkers, sum.Attestations, 100*sum.AttestationDeliveryRatio, sum.AttestationMSP99, sum.CheatersCaught, sum.Cheaters, sum.Excluded, sum.FalsePositives,
		sum.CheckConfirmations, sum.ChecksOverloaded,
		sum.SessionSamples, sum.SessionSamplesRefused, sum.SessionStatsErrors, sum.SessionFalsePositives)
	if sum.SessionStatsLastError != "" {
		fmt.Fprintf(stdout, "  last sharing error  %s\n", sum.SessionStatsLastError)
	}
	if sum.Metrics != "" {
		fmt.Fprintf(stdout, "  metrics            http://%s/metrics (while running)\n", sum.Metrics)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
