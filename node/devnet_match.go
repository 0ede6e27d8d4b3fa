package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/consumer"
)

// MatchStats add up the devnet's consumer matches.
type MatchStats struct {
	mu        sync.Mutex
	Matches   int             // requests that reached an indexer
	Matched   int             // answered with a verified session ticket
	Latencies []time.Duration // of matched requests: request to verified ticket
	Refused   map[string]int  // by reason
	Sessions  int             // sessions held (ticket accepted by the container, receipts co-signed)
	Receipts  int
	// The render path: sessions that decoded a stamped frame, request-to-first-frame times, the
	// per-session median frame latency, and how many went through a relay.
	Rendered       int
	FirstFrames    []time.Duration
	FrameLatencies []time.Duration
	RelaySessions  int
	RenderFailures map[string]int
	// Checks during sessions (devnets with checkers): the samples of the sessions' streams the
	// checkers took, the sessions whose sharing failed at least once (no checker to send to, a
	// stream error, a sample refused) and the last such error.
	StatsShared  int
	StatsErrors  int
	StatsLastErr string
}

// SuccessRatio is Matched / Matches (0 without matches).
func (s *MatchStats) SuccessRatio() float64 {
	if s.Matches == 0 {
		return 0
	}
	return float64(s.Matched) / float64(s.Matches)
}

// devRenderHold is how long each devnet session plays its stream; devStatsHold how long when the
// devnet runs checkers and its consumers share their sessions' statistics: long enough for the
// sample sent when the session ends to be judged (checker.DefaultSessionRule: a window of 3 s or
// more, from the first decoded frame). The first frame comes 0.1-0.4 s into a session on an idle
// machine; under the race detector on two cores, up to 1.1 s (a 4 s hold left 2.9-3.7 s windows).
const (
	devRenderHold = 2 * time.Second
	devStatsHold  = 5 * time.Second
)

// RunMatches has the light client ask for one match per devnet region, one after the other: each a
// retail session for the demo app from that region, ranked in turn by the three criteria, that
// plays its render stream (DevnetConfig.StreamWidth x StreamHeight) for devRenderHold; every third one is forced through the relay
// when the devnet has one. With checkers (DevnetConfig.Checkers), each consumer consents to checks
// during its session: it asks for DevnetConfig.StreamFPS (the containers' render.fps), holds the
// session for devStatsHold and sends a sample of its stream to the container's assigned checker
// when it ends (docs/CHECKERS.md, "Checks during sessions"). Before the first committee is known
// it does nothing.
func (d *Devnet) RunMatches(ctx context.Context, st *MatchStats) {
	rankings := []pb.Ranking{pb.Ranking_RANKING_INDEX, pb.Ranking_RANKING_FEE, pb.Ranking_RANKING_EXPERIENCE}
	for i, loc := range devLocations {
		if ctx.Err() != nil {
			return
		}
		req := &pb.MatchRequest{
			App:      "demo",
			Location: &pb.Location{Region: loc.region, Geohash: loc.geohash},
			Mode:     pb.ServiceMode_SERVICE_MODE_RETAIL,
			Ranking:  rankings[i%len(rankings)],
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		w, h := d.cfg.StreamWidth, d.cfg.StreamHeight
		if w == 0 || h == 0 {
			w, h = 640, 360
		}
		ro := RenderOptions{Play: true, Width: w, Height: h, FPS: d.cfg.StreamFPS, Loopback: true, Pointer: true, RelayOnly: d.cfg.Relay && i%3 == 1}
		co := ConnectOptions{Network: d.network, Stakes: d.stakes, Hold: devRenderHold, Render: ro}
		if d.cfg.Checkers > 0 && ro.FPS > 0 {
			// One sample, sent when the session ends (DefaultStatsEvery is far longer than the
			// hold), judged against the rate asked.
			co.ShareStats, co.Hold = true, devStatsHold
		}
		res, err := d.Light.Connect(cctx, req, co)
		cancel()
		if errors.Is(err, consumer.ErrNoIndexers) || (err != nil && res.Match == nil) {
			continue // no committee yet (or none reachable): not a match attempt
		}
		st.mu.Lock()
		st.Matches++
		m := res.Match
		st.StatsShared += res.StatsShared
		if res.StatsErr != nil {
			st.StatsErrors++
			st.StatsLastErr = res.StatsErr.Error()
		}
		if m.Matched {
			st.Matched++
			st.Latencies = append(st.Latencies, m.Took)
			if res.Session != nil && res.Session.Accepted {
				st.Sessions++
				st.Receipts += res.Session.Receipts
			}
			switch r := res.Render; {
			case r != nil && r.FramesStamped > 0:
				st.Rendered++
				st.FirstFrames = append(st.FirstFrames, r.FirstFrame)
				st.FrameLatencies = append(st.FrameLatencies, r.LatencyP50)
				if r.Relay {
					st.RelaySessions++
				}
			default:
				why := "no_frames"
				if res.RenderErr != nil {
					why = res.RenderErr.Error()
				}
				if st.RenderFailures == nil {
					st.RenderFailures = map[string]int{}
				}
				st.RenderFailures[why]++
			}
		} else {
			if st.Refused == nil {
				st.Refused = map[string]int{}
			}
			st.Refused[m.Reason]++
		}
		st.mu.Unlock()
	}
}

// WaitServing waits until the devnet's committee answers the light client's request for the demo
// app with a match (with relays: one that carries relay credentials too), trying once a second;
// the match is not held (its lease lapses). It returns ctx's error if none comes.
func (d *Devnet) WaitServing(ctx context.Context, relays bool) error {
	for {
		res, err := d.Light.Connect(ctx, &pb.MatchRequest{App: "demo"}, ConnectOptions{Network: d.network, Stakes: d.stakes, Hold: -1})
		if err == nil && res.Match.Matched && (!relays || len(res.Match.ICEServers) > 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: no committee served a match: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
