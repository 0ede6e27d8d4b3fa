package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rendermesh/rendermesh/simnet"
)

const simnetUsage = `Usage: rendermesh simnet <run|list> [flags]

  run    run a simulated network of real nodes and write DIR/summary.json, DIR/report.html
         and DIR/trace.jsonl (rendermesh simnet run --peers 100 --seed 1 --scenario steady --out out/)
  list   show the built-in scenarios
`

func cmdSimnet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, simnetUsage)
		return fmt.Errorf("%w: simnet needs run or list", errUsage)
	}
	switch args[0] {
	case "run":
		return cmdSimnetRun(ctx, args[1:], stdout, stderr)
	case "list":
		return cmdSimnetList(stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, simnetUsage)
		return nil
	}
	fmt.Fprint(stderr, simnetUsage)
	return fmt.Errorf("%w: unknown simnet command %q", errUsage, args[0])
}

func cmdSimnetList(stdout io.Writer) error {
	all, err := simnet.Scenarios()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPEERS\tDURATION\tDESCRIPTION")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Name, s.Peers, time.Duration(s.Duration), s.Description)
	}
	return tw.Flush()
}

func cmdSimnetRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simnet run", stderr)
	peers := fs.Int("peers", 0, "peers at the start (default: the scenario's)")
	seed := fs.Int64("seed", 1, "seed of everything random in the scenario")
	scenario := fs.String("scenario", "steady", "built-in scenario name (see simnet list) or a scenario file")
	out := fs.String("out", "", "write summary.json, report.html and trace.jsonl here (required)")
	duration := fs.Duration("duration", 0, "measured simulated time (default: the scenario's)")
	asJSON := fs.Bool("json", false, "also print the summary as one JSON object on stdout")
	logLevel := fs.String("log-level", "warn", "level of the nodes' log, written to DIR/nodes.log")
	procs := fs.Int("procs", 1, "GOMAXPROCS during the run; above 1, latencies are no longer reproducible")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	spanProfile := fs.String("measured-cpuprofile", "", "write a CPU profile of the measured span alone (after the warm-up and settle, before peers stop) to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile, taken at the end of the measured span (every peer still up), to this file")
	links := fs.String("links", simnet.LinksQUIC, "link model: "+simnet.LinksQUIC+" (QUIC and TLS over simulated packets) or "+simnet.LinksStreams+" (in-memory connections with the same delays; lighter, for large runs)")
	goProfile := fs.String("goroutineprofile", "", "write a goroutine profile, taken with the heap profile, to this file")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if *out == "" {
		return fmt.Errorf("%w: --out DIR is required", errUsage)
	}
	if *peers < 0 || *duration < 0 || *procs < 1 {
		return fmt.Errorf("%w: --peers and --duration must not be negative, --procs must be at least 1", errUsage)
	}
	if *cpuProfile != "" && *spanProfile != "" {
		return fmt.Errorf("%w: --cpuprofile and --measured-cpuprofile: the process has one CPU profiler; pick one", errUsage)
	}
	if *links != simnet.LinksQUIC && *links != simnet.LinksStreams {
		return fmt.Errorf("%w: --links %q: want %s or %s", errUsage, *links, simnet.LinksQUIC, simnet.LinksStreams)
	}
	sc, err := simnet.LoadScenario(*scenario)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	logf, err := os.Create(filepath.Join(*out, "nodes.log"))
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer logf.Close()

	stopCPU, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopCPU()
	heapProfile, closeHeap, err := profileFile(*memProfile, "heap profile")
	if err != nil {
		return err
	}
	defer closeHeap()
	goroutineProfile, closeGoroutines, err := profileFile(*goProfile, "goroutine profile")
	if err != nil {
		return err
	}
	defer closeGoroutines()
	spanProf, closeSpan, err := profileFile(*spanProfile, "CPU profile")
	if err != nil {
		return err
	}
	defer closeSpan()
	prog := new(simnet.Progress)
	done := make(chan struct{})
	barDone := make(chan struct{})
	go func() { // outside the bubble: real time
		defer close(barDone)
		showProgress(ctx, prog, stderr, done)
	}()
	res, err := simnet.Run(simnet.Config{Scenario: sc, Peers: *peers, Seed: *seed, Duration: *duration,
		Logger:   slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: level})),
		Progress: prog, Procs: *procs, Links: *links, HeapProfile: heapProfile, GoroutineProfile: goroutineProfile,
		CPUProfile: spanProf})
	close(done)
	<-barDone
	if err != nil {
		return err
	}
	if err := simnet.WriteResult(*out, res); err != nil {
		return err
	}
	if *spanProfile != "" {
		if sp := res.CPUProfileSpan; sp[1] > 0 {
			fmt.Fprintf(stderr, "simnet: %s covers simulated %s to %s\n", *spanProfile, sp[0], sp[1])
		} else {
			fmt.Fprintf(stderr, "simnet: %s is empty: the run stopped before its measured span began\n", *spanProfile)
		}
	}
	s := res.Summary
	fmt.Fprintf(stderr, "simnet: %s, %d peers, seed %d: %.0f s simulated in %.1f s; queries %.1f%% ok (p50 %.0f ms, p99 %.0f ms); gossip %.2f%% delivered (p99 %.0f ms); peak RSS %d MiB; report %s\n",
		s.Scenario, s.Peers, s.Seed, s.SimSeconds, s.WallSeconds, 100*s.QuerySuccessRatio, s.QueryMsP50, s.QueryMsP99,
		100*s.GossipDeliveryRatio, s.GossipMsP99, s.PeakRSSBytes>>20, filepath.Join(*out, "report.html"))
	if s.MeasuredWallSeconds > 0 {
		fmt.Fprintf(stderr, "simnet: %.1f s of wall time before the measured span, %.1f s in it; its CPU: %.1f s, %.3f ms per peer and simulated second\n",
			s.WarmupWallSeconds, s.MeasuredWallSeconds, s.MeasuredCPUSeconds, s.CPUMsPerPeerSecond)
	}
	if *asJSON {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	}
	return nil
}

// showProgress draws a progress bar on a terminal (a line every 10 s otherwise) until done. An
// interrupt (ctx ends) asks the simulation to stop early; it still writes what it measured, and
// the bar goes on at its pace until then.
func showProgress(ctx context.Context, p *simnet.Progress, w io.Writer, done <-chan struct{}) {
	tty := isTerminal(w)
	every := 10 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	showProgressEvery(ctx, p, w, done, tty, every)
}

func showProgressEvery(ctx context.Context, p *simnet.Progress, w io.Writer, done <-chan struct{}, tty bool, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	began := time.Now()
	interrupt := ctx.Done()
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		case <-interrupt:
			// Once: a closed channel stays ready, and the loop would spin writing lines (it
			// wrote 9 GB of them while 1,000 peers shut down).
			interrupt = nil
			p.Stop.Store(true)
			fmt.Fprintln(w, "\nsimnet: interrupted; stopping the simulation and writing what it measured")
		case <-tick.C:
		}
		sim, total := time.Duration(p.SimNanos.Load()), time.Duration(p.TotalNanos.Load())
		phase, _ := p.Phase.Load().(string)
		frac := 0.0
		if total > 0 {
			frac = min(1, float64(sim)/float64(total))
		}
		const width = 30
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		line := fmt.Sprintf("simnet [%s] %3.0f%% sim %s/%s, %d peers online, wall %s, %s", bar, 100*frac,
			sim.Round(time.Second), total.Round(time.Second), p.Online.Load(), time.Since(began).Round(time.Second), phase)
		if tty {
			fmt.Fprint(w, "\r\033[K"+line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// profileFile creates the file a profile goes to (path "": none, a nil writer) and returns the
// function that closes it.
// startCPUProfile profiles the process's CPU into path until the returned function is called
// (nothing when path is empty).
func startCPUProfile(path string) (func(), error) {
	w, closeFile, err := profileFile(path, "cpu profile")
	if err != nil || w == nil {
		return closeFile, err
	}
	if err := pprof.StartCPUProfile(w); err != nil {
		closeFile()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); closeFile() }, nil
}

func profileFile(path, what string) (io.Writer, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return f, func() { f.Close() }, nil
}
