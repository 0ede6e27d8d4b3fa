package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/session"
)

// execEnv, set in a child process's environment, makes the test binary run the rendermesh command
// line instead of the tests: the tests start real node processes from it, and kill them.
const execEnv = "RMTEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// nodeProcess is a rendermesh node running as a child process.
type nodeProcess struct {
	cmd     *exec.Cmd
	started chan struct{} // closed when the node logs that it started
	done    chan struct{} // closed when the process has exited, with err set
	err     error
}

// wait waits for the process to exit and returns how it did.
func (p *nodeProcess) wait() error {
	<-p.done
	return p.err
}

func startNodeProcess(t *testing.T, args ...string) *nodeProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"node"}, args...)...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProcess{cmd: cmd, started: make(chan struct{}), done: make(chan struct{})}
	var once sync.Once
	var logMu sync.Mutex
	var log []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "node started") {
				once.Do(func() { close(p.started) })
			}
			logMu.Lock()
			log = append(log, sc.Text())
			logMu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-read // Wait closes the pipe: read it all first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			logMu.Lock()
			t.Logf("node process %v logged:\n%s", args, strings.Join(log, "\n"))
			logMu.Unlock()
		}
	})
	return p
}

func (p *nodeProcess) waitStarted(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-p.started:
	case <-p.done:
		t.Fatalf("node process exited before it started: %v", p.err)
	case <-ctx.Done():
		t.Fatal("node process did not start")
	}
}

// waitFor polls cond on the wall clock (real networking) until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type connectOut struct {
	Matched   bool    `json:"matched"`
	Container string  `json:"container"`
	Indexer   string  `json:"indexer"`
	MatchMS   float64 `json:"match_ms"`
	Price     string  `json:"price"`
	Reason    string  `json:"reason"`
	Detail    string  `json:"detail"`
	SessionID string  `json:"session_id"`
	// the render stream
	FirstFrameMS    *float64 `json:"first_frame_ms"`
	FrameLatencyP50 *float64 `json:"frame_latency_ms_p50"`
	FPS             *float64 `json:"fps"`
	InputRTTP50     *float64 `json:"input_rtt_ms_p50"`
	Relay           *bool    `json:"relay"`
	Session         *struct {
		Accepted bool `json:"accepted"`
		Receipts int  `json:"receipts"`
	} `json:"session"`
}

// connectAnswered runs connect --json until an indexer answers for good: the epoch's members may
// still be catching up (not_indexer) on a loaded machine.
func connectAnswered(t *testing.T, ctx context.Context, args ...string) (connectOut, error) {
	t.Helper()
	for try := 0; ; try++ {
		out, r, err := tryConnect(t, args...)
		transient := err != nil || out.Reason == "not_indexer" || out.Reason == "indexer_failed" || out.Reason == "reservation"
		if !transient || try == 10 || ctx.Err() != nil {
			if err != nil {
				t.Fatalf("connect %v: not JSON (%v): %v\nstdout: %s\nstderr: %s", args, r.err, err, r.stdout, r.stderr)
			}
			return out, r.err
		}
		time.Sleep(time.Second)
	}
}

// tryConnect runs connect --json; err says the output is not a JSON summary (the command failed
// before it asked an indexer, e.g. no committee yet).
func tryConnect(t *testing.T, args ...string) (connectOut, result, error) {
	t.Helper()
	r := runCmd(t, append([]string{"connect", "--json"}, args...)...)
	var out connectOut
	err := json.Unmarshal([]byte(r.stdout), &out)
	return out, r, err
}

// readReceipts opens a receipt log and verifies every co-signed receipt in it.
func readReceipts(t *testing.T, path string) []*pb.UsageReceipt {
	t.Helper()
	lg, err := session.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer lg.Close()
	recs, err := lg.Records()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var out []*pb.UsageReceipt
	for i, raw := range recs {
		r, err := p2p.OpenCosignedReceipt(raw)
		if err != nil {
			t.Fatalf("%s: record %d does not verify: %v", path, i, err)
		}
		out = append(out, r)
	}
	return out
}

// TestConnect runs a devnet and a container in a separate process, then: a consumer that asks for
// an app nobody runs gets a refusal naming the filter; one that asks for the demo app gets matched,
// holds a session and keeps a co-signed receipt; and a session with the separate container keeps
// its co-signed receipts across a kill -9 of the container and its restart.
func TestConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a devnet of 8 nodes and a node process for about 40 s")
	}
	clearEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// 10-second epochs: under the race detector and a loaded machine, shorter ones end before
	// late tickets and imports settle.
	d, err := node.StartDevnet(ctx, node.DevnetConfig{Nodes: 8, Epoch: 10 * time.Second, Committee: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boot := d.Nodes[0].Net().Addrs()[0].String() + "/p2p/" + d.Nodes[0].Net().ID().String()
	tmp := t.TempDir()

	// The container that gets killed: the only one with the app "killtest".
	dataDir := filepath.Join(tmp, "container")
	nodeArgs := []string{"--data-dir", dataDir, "--config", d.NetworkFile(), "--roles", "container",
		"--region", "eu-west", "--geohash", "u09tvw", "--apps", "killtest", "--dev-autocheck",
		"--receipt-interval", "1s", "--heartbeat-interval", "2s", "--admin", "", "--log-level", "info",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", boot}
	proc := startNodeProcess(t, nodeArgs...)
	proc.waitStarted(t, ctx)

	// Wait until the committee of the current epoch serves matches.
	sched := d.Nodes[0].Epochs().Schedule()
	waitFor(t, ctx, "epoch 1", func() bool { return time.Now().After(sched.Start(1).Add(time.Second)) })
	waitFor(t, ctx, "a first match", func() bool {
		out, _, _ := tryConnect(t, "--bootstrap", boot, "--config", d.NetworkFile(), "--app", "demo", "--match-only")
		return out.Matched
	})

	// Refused: the filter that emptied the list is named.
	out, err := connectAnswered(t, ctx, "--bootstrap", boot, "--config", d.NetworkFile(), "--app", "no-such-app")
	if err == nil || errors.Is(err, errUsage) || out.Matched || out.Reason != "app" || out.Detail == "" {
		t.Errorf("connect --app no-such-app: matched %v, reason %q (%q), err %v; want a refusal by the app filter", out.Matched, out.Reason, out.Detail, err)
	}

	// Matched, a session held for 3 s while its stream plays, and ended; one co-signed receipt
	// kept by the consumer.
	consumerDir := filepath.Join(tmp, "consumer")
	out, err = connectAnswered(t, ctx, "--bootstrap", boot, "--config", d.NetworkFile(), "--app", "demo", "--data-dir", consumerDir,
		"--hold", "3s", "--size", "640x360", "--loopback")
	if err != nil || !out.Matched || out.Container == "" || out.Indexer == "" || out.MatchMS <= 0 || out.Price == "" || out.Session == nil || !out.Session.Accepted || out.Session.Receipts != 1 {
		t.Fatalf("connect --app demo: %+v (session %+v), err %v", out, out.Session, err)
	}
	if out.FirstFrameMS == nil || *out.FirstFrameMS <= 0 || out.FrameLatencyP50 == nil || out.FPS == nil || *out.FPS <= 0 ||
		out.InputRTTP50 == nil || out.Relay == nil || *out.Relay {
		t.Fatalf("connect --app demo played no stream: first frame %v, latency %v, fps %v, input rtt %v, relay %v",
			out.FirstFrameMS, out.FrameLatencyP50, out.FPS, out.InputRTTP50, out.Relay)
	}
	if rs := readReceipts(t, filepath.Join(consumerDir, "receipts.log")); len(rs) != 1 || !rs[0].Final {
		t.Fatalf("consumer kept %d receipts, want the one final receipt", len(rs))
	}

	// Malformed and oversize requests are refused without harming the indexer: it answers the next.
	committee, err := d.Light.Indexers(ctx, d.Network(), d.Stakes())
	if err != nil || len(committee) == 0 {
		t.Fatalf("committee: %v (%d)", err, len(committee))
	}
	ix := peer.ID(committee[0].ID)
	huge := &pb.MatchRequest{RequestId: node.NewRequestID(), App: strings.Repeat("a", 5000)}
	resp := &pb.MatchResponse{}
	if err := d.Light.Net().Request(ctx, ix, p2p.ProtoMatch, huge, resp, p2p.MaxMatchResponseSize); err == nil && resp.Refused != "bad_request" {
		t.Errorf("oversize request: answered %+v, want a bad_request refusal or a reset stream", resp)
	}
	if s, err := d.Light.Net().NewStream(ctx, ix, p2p.ProtoMatch); err == nil {
		_, _ = s.Write([]byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff}) // a length prefix, then no protobuf
		_ = s.CloseWrite()
		_, _ = io.ReadAll(s)
		_ = s.Reset()
	}
	bad := &pb.MatchRequest{RequestId: []byte("short"), App: "demo"}
	resp = &pb.MatchResponse{}
	if err := d.Light.Net().Request(ctx, ix, p2p.ProtoMatch, bad, resp, p2p.MaxMatchResponseSize); err != nil || resp.Refused != "bad_request" {
		t.Errorf("malformed request: %+v, %v; want a bad_request refusal", resp, err)
	}
	ok := &pb.MatchRequest{RequestId: node.NewRequestID(), App: "demo"}
	resp = &pb.MatchResponse{}
	if err := d.Light.Net().Request(ctx, ix, p2p.ProtoMatch, ok, resp, p2p.MaxMatchResponseSize); err != nil || (!resp.Matched && resp.Refused == "bad_request") {
		t.Errorf("the indexer after bad requests: %+v, %v; want it to serve", resp, err)
	}

	// A long session with the container process, killed after a few receipts.
	consumerLog, err := session.Open(filepath.Join(tmp, "consumer-kill.log"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	kept := 0
	keep := func(ack []byte) error {
		if err := consumerLog.Append(ack); err != nil {
			return err
		}
		mu.Lock()
		kept++
		mu.Unlock()
		return nil
	}
	type connected struct {
		res *node.ConnectResult
		err error
	}
	sessionDone := make(chan connected, 1)
	go func() {
		for {
			res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "killtest"},
				node.ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: time.Minute, Keep: keep})
			if ctx.Err() == nil && (err != nil || !res.Match.Matched) {
				time.Sleep(time.Second) // no committee member could serve yet: ask again
				continue
			}
			sessionDone <- connected{res, err}
			return
		}
	}()
	waitFor(t, ctx, "three co-signed receipts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return kept >= 3
	})
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.wait()
	c := <-sessionDone
	if c.err != nil || c.res.Match == nil || !c.res.Match.Matched || c.res.SessionErr == nil {
		t.Fatalf("session with the killed container: %+v, err %v; want a match whose session broke", c.res, c.err)
	}
	consumerLog.Close()
	ticket := c.res.Match.Ticket

	// Restart on the same data directory: the node starts (its state and receipts load), then stops.
	proc2 := startNodeProcess(t, nodeArgs...)
	proc2.waitStarted(t, ctx)

	// Never booked twice: once the indexers see the restarted container in standby (a request over
	// budget is refused by the budget filter, after the standby and app filters passed), consumers
	// race for it through every indexer of the epoch at once; exactly one gets it.
	waitFor(t, ctx, "the restarted container indexed in standby", func() bool {
		res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "killtest", BudgetMicros: 1},
			node.ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: -1})
		return err == nil && res.Match.Reason == "budget"
	})
	const racers = 8
	results := make([]*node.ConnectResult, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			results[i], _ = d.Light.Connect(ctx, &pb.MatchRequest{App: "killtest"},
				node.ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: -1})
		})
	}
	wg.Wait()
	won, indexers := 0, map[string]bool{}
	for _, r := range results {
		if r == nil || r.Match == nil {
			continue
		}
		for _, a := range r.Match.Attempts {
			indexers[a.Indexer] = true
		}
		if r.Match.Matched {
			won++
		}
	}
	// Safety is the property: never two. (On a machine loaded enough that the indexers' views lag,
	// every racer may be refused; that is logged, not failed.)
	if won > 1 {
		for i, r := range results {
			if r != nil && r.Match != nil {
				t.Logf("racer %d: matched %v, %s (%s), attempts %+v", i, r.Match.Matched, r.Match.Reason, r.Match.Detail, r.Match.Attempts)
			}
		}
		t.Errorf("%d of %d racing consumers got the one container; want at most 1", won, racers)
	}
	t.Logf("%d consumers raced through %d indexers for one container: %d matched", racers, len(indexers), won)

	_ = proc2.cmd.Process.Signal(syscall.SIGTERM)
	if err := proc2.wait(); err != nil {
		t.Fatalf("restarted node did not stop cleanly: %v", err)
	}

	// An indexer that dies costs the consumer one retry: close a member of the current committee
	// (not the bootstrap node) and ask with a request ID that orders it first. A dead indexer stays
	// on the committees it was drawn for (this epoch's, maybe the next one's). A consumer asks the
	// indexers it holds a connection to first (a dead one's is gone): the client drops its
	// connections to the other members, so that the request's order decides.
	deadOK := false
	for try := 0; try < 6 && !deadOK; try++ {
		e := sched.Epoch(time.Now())
		var ids []string
		var dead *node.Node
		for _, tk := range d.Nodes[0].Epochs().Committee(e) {
			ids = append(ids, tk.ID)
			for _, n := range d.Nodes[1:] {
				// Not a container as well: the next indexer could pick the dead container and
				// cost the consumer a second retry, which is the container's death, not the
				// indexer's (seen in CI: attempts dead indexer, "reservation", matched).
				if dead == nil && string(n.Net().ID()) == tk.ID && n.Status().Container == nil {
					dead = n
				}
			}
		}
		if len(ids) < 2 || dead == nil {
			t.Logf("epoch %d: committee of %d without a plain member to kill: next epoch", e, len(ids))
			waitFor(t, ctx, "the next epoch", func() bool { return sched.Epoch(time.Now()) > e })
			continue
		}
		req := &pb.MatchRequest{App: "demo"}
		for req.RequestId = node.NewRequestID(); consumer.Order(req.RequestId, ids)[0] != string(dead.Net().ID()); {
			req.RequestId = node.NewRequestID()
		}
		dead.Close()
		for _, id := range ids {
			_ = d.Light.Net().Host().Network().ClosePeer(peer.ID(id))
		}
		res, err := d.Light.Connect(ctx, req, node.ConnectOptions{Network: d.Network(), Stakes: d.Stakes(), Hold: -1})
		if err != nil || res.Match == nil || len(res.Match.Attempts) == 0 || res.Match.Attempts[0].Indexer != string(dead.Net().ID()) {
			var first string
			if err == nil && res.Match != nil && len(res.Match.Attempts) > 0 {
				first = peer.ID(res.Match.Attempts[0].Indexer).String()
			}
			t.Logf("killed indexer %s of epoch %d, but the client asked %q first (%v): again", dead.Net().ID(), e, first, err)
			continue
		}
		m := res.Match
		// The dead indexer's failure is the only one: every later indexer answered, and a match
		// came at the second attempt unless an answer sent the consumer on (an index still
		// empty: no_containers).
		bad := len(m.Attempts) < 2 || m.Attempts[0].Err == ""
		for i, a := range m.Attempts {
			if i > 0 && (a.Err != "" || (i < len(m.Attempts)-1 && a.Refused != "no_containers")) {
				bad = true
			}
		}
		if bad {
			t.Errorf("with indexer %s dead: matched %v after attempts %+v; want the dead one failed and the next one asked", dead.Net().ID(), m.Matched, m.Attempts)
		}
		t.Logf("indexer %s killed: matched %v at attempt %d", dead.Net().ID(), m.Matched, len(m.Attempts))
		deadOK = true
	}
	if !deadOK {
		t.Error("never managed to kill an indexer the client then asked")
	}

	containerRs := readReceipts(t, filepath.Join(dataDir, node.ReceiptsFile))
	consumerRs := readReceipts(t, filepath.Join(tmp, "consumer-kill.log"))
	if len(containerRs) < 2 || len(consumerRs) < len(containerRs) {
		t.Fatalf("after kill and restart the container holds %d receipts and the consumer %d; want at least 2, the consumer's a superset", len(containerRs), len(consumerRs))
	}
	for i, r := range containerRs {
		c := consumerRs[i]
		if string(r.SessionId) != string(ticket.SessionId) || r.Seq != uint32(i+1) || c.Seq != r.Seq || c.AmountMicros != r.AmountMicros {
			t.Errorf("receipt %d: container seq %d amount %d, consumer seq %d amount %d: want the same contiguous receipts of session %x",
				i, r.Seq, r.AmountMicros, c.Seq, c.AmountMicros, ticket.SessionId)
		}
	}
	t.Logf("kill -9 after %d co-signed receipts: the container kept %d, the consumer %d", kept, len(containerRs), len(consumerRs))
}
