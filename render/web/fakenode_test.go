package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/rendermesh/rendermesh/render/input"
)

// fakeNode stands in for the node's render endpoints, for the page to be tested against before
// they exist: the app list, a WHEP endpoint answering with a pion PeerConnection that streams the
// test encoder's stamped frames (30 fps, 1024×576) and reads the input channel, DELETE of a
// session, and an in-process TURN relay for relay=1.
type fakeNode struct {
	t    testing.TB
	apps []string
	turn *turn.Server
	ice  webrtc.ICEServer // the relay, as sessions and the page are told

	mu       sync.Mutex
	sessions map[string]*fakeSession
	next     int
	events   []input.Event // every input event received, pings and pongs aside
	invalid  int           // messages that did not decode
	pongs    int           // answers to our pings
	deleted  int
	samples  int    // session samples taken (share_stats)
	relayed  []bool // per session created: relay asked
}

type fakeSession struct {
	node  *fakeNode
	id    string
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticSample
	start time.Time
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	state   input.State
	pred    *input.Predictor
	rtt     input.RTT
	arrived time.Time // when the last move arrived
}

const fixtureTURNUser, fixtureTURNPass = "fixture", "fixture-secret"

// newFakeNode starts the relay; close it with the returned func.
func newFakeNode(t testing.TB) *fakeNode {
	n := &fakeNode{t: t, apps: []string{"demo", "spinner"}, sessions: map[string]*fakeSession{}}
	ip := hostIPv4()
	udp, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("turn listen: %v", err)
	}
	n.turn, err = turn.NewServer(turn.ServerConfig{
		Realm: "rendermesh-fixture",
		AuthHandler: func(user, realm string, _ net.Addr) ([]byte, bool) {
			return turn.GenerateAuthKey(user, realm, fixtureTURNPass), user == fixtureTURNUser
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            udp,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP(ip), Address: ip},
		}},
	})
	if err != nil {
		t.Fatalf("turn: %v", err)
	}
	n.ice = webrtc.ICEServer{
		URLs:       []string{fmt.Sprintf("turn:%s?transport=udp", udp.LocalAddr())},
		Username:   fixtureTURNUser,
		Credential: fixtureTURNPass,
	}
	return n
}

// hostIPv4 is an address of this machine the browser and the relay can both use: the first
// non-loopback IPv4 (pion, like Chromium, gathers no loopback candidates), else 127.0.0.1.
func hostIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	return "127.0.0.1"
}

func (n *fakeNode) Close() {
	n.mu.Lock()
	ss := make([]*fakeSession, 0, len(n.sessions))
	for _, s := range n.sessions {
		ss = append(ss, s)
	}
	n.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
	_ = n.turn.Close()
}

// Handler serves the page and the fake endpoints, as the node's mux will.
func (n *fakeNode) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /", Handler())
	mux.HandleFunc("GET /v1/render/apps", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apps": n.apps})
	})
	mux.HandleFunc("POST /v1/render/whep", n.whep)
	mux.HandleFunc("DELETE /v1/render/whep/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		s := n.sessions[r.PathValue("id")]
		n.mu.Unlock()
		if s == nil {
			jsonError(w, http.StatusNotFound, "no such session", "it ended already, or never began")
			return
		}
		s.close()
		n.mu.Lock()
		n.deleted++
		n.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	// Samples of a session that shares its statistics: the fake node has no checker to send them
	// to, so it takes each one.
	mux.HandleFunc("POST /v1/render/whep/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		s := n.sessions[r.PathValue("id")]
		if s != nil {
			n.samples++
		}
		shared := n.samples
		n.mu.Unlock()
		if s == nil {
			jsonError(w, http.StatusNotFound, "no such session", "it ended already, or never began")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"accepted": true, "shared": shared})
	})
	return mux
}

func jsonError(w http.ResponseWriter, code int, msg, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "reason": reason})
}

func (n *fakeNode) whep(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		jsonError(w, http.StatusUnsupportedMediaType, "want an SDP offer", "Content-Type is "+ct)
		return
	}
	q := r.URL.Query()
	app := q.Get("app")
	known := false
	for _, a := range n.apps {
		known = known || a == app
	}
	if !known {
		jsonError(w, http.StatusNotFound, "no such app", fmt.Sprintf("%q is not offered here", app))
		return
	}
	for _, p := range []string{"rank", "max_latency_ms", "relay"} {
		if !q.Has(p) {
			jsonError(w, http.StatusBadRequest, "missing parameter", p)
			return
		}
	}
	offer, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "unreadable offer", err.Error())
		return
	}
	relay := q.Get("relay") == "1"
	s, answer, err := n.newSession(string(offer), relay)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "could not start the session", err.Error())
		return
	}
	match, _ := json.Marshal(map[string]any{
		"container": "12D3KooWFixtureContainer", "indexer": "12D3KooWFixtureIndexer",
		"price": "0.123", "match_ms": 12.3, "session_id": s.id,
	})
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/v1/render/whep/"+s.id)
	h.Set("X-Rendermesh-Match", string(match))
	h.Add("Link", fmt.Sprintf(`<%s>; rel="ice-server"; username="%s"; credential="%s"; credential-type="password"`,
		n.ice.URLs[0], n.ice.Username, n.ice.Credential))
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func (n *fakeNode) newSession(offer string, relay bool) (*fakeSession, string, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, "", err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, "", err
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	cfg := webrtc.Configuration{}
	if relay {
		se.SetRelayAcceptanceMinWait(0)
		cfg.ICEServers = []webrtc.ICEServer{n.ice}
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, "", err
	}
	pred, err := input.NewPredictor(input.PredictorConfig{})
	if err != nil {
		return nil, "", err
	}
	n.mu.Lock()
	n.next++
	s := &fakeSession{node: n, id: fmt.Sprintf("s%04d", n.next), pc: pc, start: time.Now(), done: make(chan struct{}), pred: pred}
	n.sessions[s.id] = s
	n.relayed = append(n.relayed, relay)
	n.mu.Unlock()
	fail := func(err error) (*fakeSession, string, error) { s.close(); return nil, "", err }

	s.track, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "fixture")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(s.track)
	if err != nil {
		return fail(err)
	}
	go func() { // RTCP must be read for the interceptors (NACK) to work
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() == "input" {
			dc.OnOpen(func() { go s.pinger(dc) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { s.receive(dc, m.Data) })
		}
	})
	var streaming sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			streaming.Do(func() { go s.stream() })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.close()
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		return fail(fmt.Errorf("ICE gathering did not complete"))
	}
	return s, pc.LocalDescription().SDP, nil
}

func (s *fakeSession) close() {
	s.once.Do(func() {
		close(s.done)
		_ = s.pc.Close()
		s.node.mu.Lock()
		delete(s.node.sessions, s.id)
		s.node.mu.Unlock()
	})
}

// nowMS is the session's clock for pings, in ms.
func (s *fakeSession) nowMS() float64 {
	return float64(time.Since(s.start)) / float64(time.Millisecond)
}

func (s *fakeSession) receive(dc *webrtc.DataChannel, b []byte) {
	e, err := input.Decode(b)
	n := s.node
	if err != nil {
		n.mu.Lock()
		n.invalid++
		n.mu.Unlock()
		n.t.Logf("fake node: %v: %q", err, b)
		return
	}
	if pong, ok := input.Reply(e); ok {
		if msg, err := input.Encode(pong); err == nil {
			_ = dc.SendText(string(msg))
		}
		return
	}
	if rtt, ok := input.Since(e, s.nowMS()); ok {
		s.mu.Lock()
		s.rtt.Observe(rtt)
		s.mu.Unlock()
		n.mu.Lock()
		n.pongs++
		n.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.state.Apply(e)
	if e.Type == input.TypeMove {
		s.pred.Observe(e.X, e.Y, time.Duration(e.TS*float64(time.Millisecond)))
		s.arrived = time.Now()
	}
	s.mu.Unlock()
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
}

func (s *fakeSession) pinger(dc *webrtc.DataChannel) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for id := uint32(1); ; id++ {
		msg, _ := input.Encode(input.Event{Type: input.TypePing, ID: id, TS: s.nowMS()})
		if dc.SendText(string(msg)) != nil {
			return
		}
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// stream sends a frame every 1/30 s with the cursor where the predictor says the pointer will be
// one round trip after now, as a container does.
func (s *fakeSession) stream() {
	const fps = 30
	tick := time.NewTicker(time.Second / fps)
	defer tick.Stop()
	for n := uint32(1); ; n++ {
		s.mu.Lock()
		x, y := s.pred.Predict(s.rtt.P50() + time.Since(s.arrived))
		visible := s.state.Pointer
		s.mu.Unlock()
		frame := fixtureFrame(n, time.Now(), x, y, visible)
		if err := s.track.WriteSample(media.Sample{Data: frame, Duration: time.Second / fps}); err != nil {
			return
		}
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// seen returns a copy of the events received so far and the counters.
func (n *fakeNode) seen() (events []input.Event, invalid, pongs, deleted, live int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]input.Event(nil), n.events...), n.invalid, n.pongs, n.deleted, len(n.sessions)
}
