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

// maxOfferBytes bounds a browser's SDP offer.
const maxOfferBytes = 64 << 10

type webSessions struct {
	mu   sync.Mutex
	live map[string]context.CancelFunc
}

func (ws *webSessions) add(id string, cancel context.CancelFunc) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.live == nil {
		ws.live = make(map[string]context.CancelFunc)
	}
	ws.live[id] = cancel
}

func (ws *webSessions) end(id string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	c, ok := ws.live[id]
	if ok {
		c()
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
	accepted := func() {
		go func() {
			err := n.forwardOffer(sctx, m, string(body), relayOnly, answers)
			if err != nil {
				failed <- err
			}
			end() // the render stream is over: so is the session
		}()
	}
	n.web.add(id, end)
	go func() {
		defer n.web.end(id)
		if _, err := runSession(sctx, n.net, n.opts.Clock, m, ConnectOptions{Hold: webHold}, accepted); err != nil {
			failed <- err
		}
	}()
	select {
	case ans := <-answers:
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
func (n *Node) forwardOffer(ctx context.Context, m *consumer.Match, sdp string, relayOnly bool, answers chan<- string) error {
	s, err := n.net.NewStream(ctx, peer.ID(m.Container), p2p.ProtoRender)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	sig := streamSignaller{s}
	if err := sig.Send(&pb.RenderSignal{Offer: &pb.RenderOffer{Ticket: m.TicketRaw, Sdp: sdp, RelayOnly: relayOnly, IceServers: m.ICEServers}}); err != nil {
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
