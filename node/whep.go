package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/render/web"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// The web client: a page served by the node (render/web) whose signalling reaches the network
// through the node, WHEP-style. The browser POSTs its SDP offer; the node gets matched as the
// consumer, opens the session (keeping its receipts) and forwards the offer to the container on
// /rendermesh/render/1.0.0; the container's answer comes back as the HTTP response, and the media
// then flows straight between the browser and the container. DELETE on the session resource ends it.

// webHold is how long a browser session lasts unless the page ends it: one 15-minute unit.
const webHold = 15 * time.Minute

// maxOfferBytes bounds a browser's SDP offer; maxWebSampleBytes a page's session sample.
const (
	maxOfferBytes     = 64 << 10
	maxWebSampleBytes = 4 << 10
)

// defaultWebFPS is the frame rate a browser session that shares its statistics asks for when the
// page names none.
const defaultWebFPS = 30

type webSessions struct {
	mu   sync.Mutex
	live map[string]*webSession
}

// webSession is one browser session the node holds as its consumer.
type webSession struct {
	cancel    context.CancelFunc
	container string // raw peer ID
	ticketRaw []byte
	// With the page's consent (share_stats=1), its samples go to the container's assigned checker,
	// judged against fps, the rate the node asked the container for.
	share bool
	fps   int
	relay bool
	// receipts keeps the session's latest usage receipt: the samples carry it.
	receipts *latestReceipt

	// mu also orders the page's samples: one is sent at a time, in the order they came.
	mu        sync.Mutex
	answered  time.Time // when the container's answer came (wall clock, as the stream runs)
	claimedMs int64     // the windows of the samples sent so far
	seq       uint32    // the last sample's number
	shared    int       // samples the checker took
}

func (ws *webSessions) add(id string, s *webSession) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.live == nil {
		ws.live = make(map[string]*webSession)
	}
	ws.live[id] = s
}

func (ws *webSessions) get(id string) *webSession {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.live[id]
}

func (ws *webSessions) end(id string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	s, ok := ws.live[id]
	if ok {
		s.cancel()
		delete(ws.live, id)
	}
	return ok
}

// registerWeb adds the web client and its signalling to the admin mux.
func (n *Node) registerWeb(mux *http.ServeMux) {
	h := web.Handler()
	for _, p := range web.Paths() {
		if p == "/" {
			p = "/{$}"
		}
		mux.Handle("GET "+p, h)
	}
	mux.HandleFunc("GET /v1/render/apps", func(w http.ResponseWriter, r *http.Request) {
		apps := n.cfg.Container.Apps
		if len(apps) == 0 {
			apps = []string{"demo"}
		}
		writeJSON(w, http.StatusOK, map[string]any{"apps": apps})
	})
	mux.HandleFunc("POST /v1/render/whep", n.whepOffer)
	mux.HandleFunc("POST /v1/render/whep/{id}/stats", n.whepStats)
	mux.HandleFunc("DELETE /v1/render/whep/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !n.web.end(r.PathValue("id")) {
			http.Error(w, "no such session", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type whepError struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

type whepMatch struct {
	Container string  `json:"container"`
	Indexer   string  `json:"indexer"`
	Price     string  `json:"price"`
	MatchMS   float64 `json:"match_ms"`
	SessionID string  `json:"session_id"`
}

func (n *Node) whepOffer(w http.ResponseWriter, r *http.Request) {
	if n.ep == nil {
		writeJSON(w, http.StatusServiceUnavailable, whepError{Error: "this node holds no elections: it cannot find indexers"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOfferBytes+1))
	if err != nil || len(body) == 0 || len(body) > maxOfferBytes {
		writeJSON(w, http.StatusBadRequest, whepError{Error: "the body must be an SDP offer of at most 64 KiB"})
		return
	}
	q := r.URL.Query()
	req := &pb.MatchRequest{App: q.Get("app"), Hardware: &pb.HardwareRequirement{}, Mode: pb.ServiceMode_SERVICE_MODE_RETAIL, RequestId: NewRequestID()}
	if req.App == "" {
		req.App = "demo"
	}
	switch q.Get("rank") {
	case "", "index":
		req.Ranking = pb.Ranking_RANKING_INDEX
	case "fee":
		req.Ranking = pb.Ranking_RANKING_FEE
	case "experience":
		req.Ranking = pb.Ranking_RANKING_EXPERIENCE
	default:
		writeJSON(w, http.StatusBadRequest, whepError{Error: "rank must be index, fee or experience"})
		return
	}
	if v := q.Get("max_latency_ms"); v != "" && v != "0" {
		ms, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, whepError{Error: "max_latency_ms must be a number of milliseconds"})
			return
		}
		req.MaxLatencyMs = uint32(ms)
	}
	if err := indexer.ValidateRequest(req); err != nil {
		writeJSON(w, http.StatusBadRequest, whepError{Error: err.Error(), Reason: "bad_request"})
		return
	}
	relayOnly := q.Get("relay") == "1"
	share := q.Get("share_stats") == "1"
	fps := 0 // the container's own rate
	if v := q.Get("fps"); v != "" {
		f, err := strconv.Atoi(v)
		if err != nil || f < 1 || f > 120 {
			writeJSON(w, http.StatusBadRequest, whepError{Error: "fps must be 1 to 120"})
			return
		}
		fps = f
	} else if share {
		fps = defaultWebFPS // samples are judged against the rate asked: ask for one
	}

	mctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	m, err := consumer.Connect(mctx, &nodeMatchNet{n: n}, req, consumer.ConnectOptions{Clock: n.opts.Clock})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, whepError{Error: err.Error(), Reason: "no_indexer"})
		return
	}
	if !m.Matched {
		writeJSON(w, http.StatusServiceUnavailable, whepError{Error: m.Detail, Reason: m.Reason})
		return
	}
	id := hex.EncodeToString(m.Ticket.SessionId)
	sctx, end := context.WithCancel(n.ctx)
	answers := make(chan string, 1)
	failed := make(chan error, 1)
	ws := &webSession{cancel: end, container: m.Container, ticketRaw: m.TicketRaw, share: share, fps: fps, relay: relayOnly,
		receipts: new(latestReceipt)}
	accepted := func() {
		go func() {
			err := n.forwardOffer(sctx, m, string(body), relayOnly, fps, answers)
			if err != nil {
				failed <- err
			}
			end() // the render stream is over: so is the session
		}()
	}
	n.web.add(id, ws)
	go func() {
		defer n.web.end(id)
		if _, err := runSession(sctx, n.net, n.opts.Clock, m, ConnectOptions{Hold: webHold, receipts: ws.receipts}, accepted); err != nil {
			failed <- err
		}
	}()
	select {
	case ans := <-answers:
		ws.mu.Lock()
		ws.answered = time.Now()
		ws.mu.Unlock()
		mj, _ := json.Marshal(whepMatch{Container: peer.ID(m.Container).String(), Indexer: peer.ID(m.Indexer).String(),
			Price: FormatAmount(m.Ticket.PriceMicros), MatchMS: float64(m.Took.Microseconds()) / 1000, SessionID: id})
		w.Header().Set("Content-Type", "application/sdp")
		w.Header().Set("Location", "/v1/render/whep/"+id)
		w.Header().Set("X-Rendermesh-Match", string(mj))
		// The relays, as WHEP announces ICE servers (RFC 9725 section 4.6): a browser that must
		// relay can reconnect through them.
		for _, is := range m.ICEServers {
			for _, u := range is.Urls {
				w.Header().Add("Link", fmt.Sprintf("<%s>; rel=\"ice-server\"; username=%q; credential=%q; credential-type=\"password\"", u, is.Username, is.Credential))
			}
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, ans)
	case err := <-failed:
		n.web.end(id)
		writeJSON(w, http.StatusBadGateway, whepError{Error: err.Error(), Reason: "session"})
	case <-mctx.Done():
		n.web.end(id)
		writeJSON(w, http.StatusGatewayTimeout, whepError{Error: "the container did not answer in time", Reason: "timeout"})
	}
}

// forwardOffer carries a browser's offer to the container (non-trickle: the SDP holds every
// candidate) and its answer back, then holds the signalling stream open until the session ends.
func (n *Node) forwardOffer(ctx context.Context, m *consumer.Match, sdp string, relayOnly bool, fps int, answers chan<- string) error {
	s, err := n.net.NewStream(ctx, peer.ID(m.Container), p2p.ProtoRender)
	if err != nil {
		return err
	}
	defer s.Close()
	defer n.net.Hold(s)()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	sig := streamSignaller{s}
	if err := sig.Send(&pb.RenderSignal{Offer: &pb.RenderOffer{Ticket: m.TicketRaw, Sdp: sdp, RelayOnly: relayOnly, IceServers: m.ICEServers, Fps: uint32(fps)}}); err != nil {
		return err
	}
	for {
		msg, err := sig.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case msg.GetRefused() != "":
			return fmt.Errorf("container refused the stream: %s", msg.GetRefused())
		case msg.GetAnswer() != "":
			select {
			case answers <- msg.GetAnswer():
			default: // only the first answer goes to the browser
			}
		case msg.GetEnd():
			return nil
		}
	}
}

// webSample is one window of a browser session's stream as the page measured it (app.js,
// StatsSampler): POST /v1/render/whep/{id}/stats.
type webSample struct {
	WindowMs     int64   `json:"window_ms"`
	Frames       int64   `json:"frames"`         // frames decoded in the window
	FramesLost   int64   `json:"frames_lost"`    // frame numbers the stream skipped
	Width        int64   `json:"width"`          // the size most frames had
	Height       int64   `json:"height"`         //
	LatencyMsP50 float64 `json:"latency_ms_p50"` // the render stamp to presented
	LatencyMsP99 float64 `json:"latency_ms_p99"`
	LongestGapMs int64   `json:"longest_gap_ms"` // the longest time without a presented frame
}

// decodeWebSample reads one JSON sample of at most maxWebSampleBytes, with no field it does not know.
func decodeWebSample(body io.Reader) (webSample, error) {
	var in webSample
	dec := json.NewDecoder(io.LimitReader(body, maxWebSampleBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return webSample{}, fmt.Errorf("the body must be one JSON sample: %w", err)
	}
	return in, nil
}

// webSampleAck is the answer to a page's sample.
type webSampleAck struct {
	Accepted bool   `json:"accepted"`
	Seq      uint32 `json:"seq"`
	Checker  string `json:"checker,omitempty"`
	Shared   int    `json:"shared"` // samples of this session the checker took so far
	Error    string `json:"error,omitempty"`
}

// webSampleSlack is how far the windows of a session's samples together may run past the time
// since the container answered (the page's clock and the node's, the answer's way back).
const webSampleSlack = 2 * time.Second

// check says what is wrong with a page's sample, "" when nothing: it must fit the wire's bounds
// and, with the samples before it, the time the session has run.
func (ws *webSession) check(in webSample, now time.Time) string {
	switch {
	case in.WindowMs < p2p.MinSessionStatsWindowMs || in.WindowMs > p2p.MaxSessionStatsWindowMs:
		return fmt.Sprintf("window_ms must be %d to %d", p2p.MinSessionStatsWindowMs, p2p.MaxSessionStatsWindowMs)
	case in.Frames < 0 || in.FramesLost < 0 || in.Width < 0 || in.Height < 0 || in.LongestGapMs < 0 ||
		in.LatencyMsP50 < 0 || in.LatencyMsP99 < 0:
		return "counts, sizes and times cannot be negative"
	case in.Frames > in.WindowMs*120/1000+1 || in.FramesLost > in.WindowMs*120/1000+1:
		return "more frames than 120 a second"
	case in.Width > 16384 || in.Height > 16384:
		return "width and height are at most 16384"
	case in.LongestGapMs > in.WindowMs:
		return "longest_gap_ms is longer than the window"
	case in.LatencyMsP50 > 3.6e6 || in.LatencyMsP99 > 3.6e6 || in.LatencyMsP99 < in.LatencyMsP50:
		return "latencies must be under an hour, p99 at least p50"
	case ws.answered.IsZero():
		return "the session has not started"
	case time.Duration(ws.claimedMs+in.WindowMs)*time.Millisecond > now.Sub(ws.answered)+webSampleSlack:
		return "the samples' windows are longer than the session"
	case ws.seq >= maxSessionSamples:
		return "too many samples for one session"
	}
	return ""
}

// whepStats takes one sample of a browser session that consented to checks during sessions, signs
// it as the session's consumer (this node: it was matched for the page) and sends it to the
// container's assigned checker, like ConnectOptions.ShareStats does for a Go client.
func (n *Node) whepStats(w http.ResponseWriter, r *http.Request) {
	ws := n.web.get(r.PathValue("id"))
	if ws == nil {
		writeJSON(w, http.StatusNotFound, webSampleAck{Error: "no such session"})
		return
	}
	if !ws.share {
		writeJSON(w, http.StatusConflict, webSampleAck{Error: "this session did not consent to sharing its statistics (share_stats=1 on the offer)"})
		return
	}
	in, err := decodeWebSample(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, webSampleAck{Error: err.Error()})
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if why := ws.check(in, time.Now()); why != "" {
		writeJSON(w, http.StatusBadRequest, webSampleAck{Seq: ws.seq, Shared: ws.shared, Error: why})
		return
	}
	ws.seq++
	ws.claimedMs += in.WindowMs
	s := &pb.SessionStats{
		Ticket: ws.ticketRaw, Seq: ws.seq, WindowMs: uint32(in.WindowMs), FpsAsked: uint32(ws.fps),
		Frames: uint32(in.Frames), FramesLost: uint32(in.FramesLost),
		FpsMilli: uint32(in.Frames * 1000 * 1000 / in.WindowMs), Width: uint32(in.Width), Height: uint32(in.Height),
		LatencyUsP50: uint32(in.LatencyMsP50 * 1000), LatencyUsP99: uint32(in.LatencyMsP99 * 1000),
		LongestGapMs: uint32(in.LongestGapMs), Relay: ws.relay, Receipt: ws.receipts.get(),
	}
	chk, err := sendSample(r.Context(), n.net, n.opts.Clock, n.assignedChecker, ws.container, s)
	ack := webSampleAck{Accepted: err == nil, Seq: s.Seq}
	if chk != "" {
		ack.Checker = chk.String()
	}
	if err != nil {
		ack.Shared, ack.Error = ws.shared, err.Error()
		writeJSON(w, http.StatusBadGateway, ack)
		return
	}
	ws.shared++
	ack.Shared = ws.shared
	writeJSON(w, http.StatusOK, ack)
}
