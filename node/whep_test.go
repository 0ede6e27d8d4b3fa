package node

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/p2p"
)

// A page's sample must fit the wire's bounds and, with the samples before it, the time its session
// has run: the node signs it as the consumer, so it checks what the page claims first.
func TestWebSampleCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ok := webSample{WindowMs: 5000, Frames: 150, Width: 1280, Height: 720, LatencyMsP50: 40, LatencyMsP99: 60, LongestGapMs: 80}
	fresh := func() *webSession { return &webSession{share: true, fps: 30, answered: now.Add(-6 * time.Second)} }
	if why := fresh().check(ok, now); why != "" {
		t.Fatalf("a good sample refused: %s", why)
	}
	for name, tc := range map[string]struct {
		mod  func(*webSample, *webSession)
		want string
	}{
		"window too short":        {func(s *webSample, _ *webSession) { s.WindowMs = 999 }, "window_ms"},
		"window too long":         {func(s *webSample, _ *webSession) { s.WindowMs = 15*60*1000 + 1 }, "window_ms"},
		"negative frames":         {func(s *webSample, _ *webSession) { s.Frames = -1 }, "negative"},
		"negative latency":        {func(s *webSample, _ *webSession) { s.LatencyMsP50 = -1 }, "negative"},
		"too many frames":         {func(s *webSample, _ *webSession) { s.Frames = 602 }, "120 a second"},
		"too many lost":           {func(s *webSample, _ *webSession) { s.FramesLost = 602 }, "120 a second"},
		"huge picture":            {func(s *webSample, _ *webSession) { s.Width = 20000 }, "16384"},
		"gap past the window":     {func(s *webSample, _ *webSession) { s.LongestGapMs = 5001 }, "longest_gap_ms"},
		"p99 under p50":           {func(s *webSample, _ *webSession) { s.LatencyMsP99 = 10 }, "p99"},
		"not started":             {func(_ *webSample, ws *webSession) { ws.answered = time.Time{} }, "not started"},
		"longer than the session": {func(_ *webSample, ws *webSession) { ws.claimedMs = 4000 }, "longer than the session"},
		"too many samples":        {func(_ *webSample, ws *webSession) { ws.seq = maxSessionSamples }, "too many"},
	} {
		s, ws := ok, fresh()
		tc.mod(&s, ws)
		if why := ws.check(s, now); !strings.Contains(why, tc.want) {
			t.Errorf("%s: %q, want it to say %q", name, why, tc.want)
		}
	}
	// 2 s of slack for clocks and the answer's way back, no more.
	ws := fresh()
	ws.claimedMs = 2999
	if why := ws.check(ok, now); why != "" {
		t.Errorf("a sample within the slack refused: %s", why)
	}
}

// The stats resource answers 404 for an unknown session, 409 for one that did not consent and 400
// for a body that is not one sample, before anything is signed or sent.
func TestWhepStatsRefusals(t *testing.T) {
	n := &Node{}
	n.web.add("shared", &webSession{cancel: func() {}, share: true, fps: 30, answered: time.Now().Add(-10 * time.Second)})
	n.web.add("private", &webSession{cancel: func() {}, answered: time.Now().Add(-10 * time.Second)})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/render/whep/{id}/stats", n.whepStats)
	for _, tc := range []struct {
		id, body string
		code     int
		want     string
	}{
		{"nope", `{"window_ms":5000}`, http.StatusNotFound, "no such session"},
		{"private", `{"window_ms":5000}`, http.StatusConflict, "consent"},
		{"shared", `{"window_ms":5000,"extra":1}`, http.StatusBadRequest, "unknown field"},
		{"shared", `not json`, http.StatusBadRequest, "one JSON sample"},
		{"shared", `{"window_ms":5000,"frames":-3}`, http.StatusBadRequest, "negative"},
		{"shared", `{"window_ms":5000,"frames":1` + strings.Repeat(" ", maxWebSampleBytes) + `}`, http.StatusBadRequest, "JSON"},
	} {
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/render/whep/"+tc.id+"/stats", strings.NewReader(tc.body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s %.40q: %d %s, want %d saying %q", tc.id, tc.body, w.Code, w.Body.String(), tc.code, tc.want)
		}
	}
	if ws := n.web.get("shared"); ws.seq != 0 || ws.claimedMs != 0 {
		t.Errorf("refused samples were counted: seq %d, %d ms claimed", ws.seq, ws.claimedMs)
	}
}

// Whatever a page sends, decoding and checking it never panics, and a sample the checks pass keeps
// the bounds the wire format and the checker rely on.
func FuzzWebSample(f *testing.F) {
	f.Add([]byte(`{"window_ms":5000,"frames":150,"frames_lost":0,"width":1280,"height":720,"latency_ms_p50":40,"latency_ms_p99":60,"longest_gap_ms":80}`))
	f.Add([]byte(`{"window_ms":1e300}`))
	f.Add([]byte(`{"window_ms":5000,"latency_ms_p50":-0,"latency_ms_p99":NaN}`))
	f.Add([]byte(`{"window_ms":5000}{"window_ms":5000}`))
	f.Add([]byte(`[]`))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeWebSample(bytes.NewReader(body))
		if err != nil {
			return
		}
		ws := &webSession{share: true, fps: 30, answered: now.Add(-20 * time.Minute)}
		if ws.check(in, now) != "" {
			return
		}
		if in.WindowMs < p2p.MinSessionStatsWindowMs || in.WindowMs > p2p.MaxSessionStatsWindowMs ||
			in.Frames < 0 || in.Frames > math.MaxUint32 || in.LongestGapMs > in.WindowMs ||
			!(in.LatencyMsP50 >= 0 && in.LatencyMsP99 >= in.LatencyMsP50 && in.LatencyMsP99*1000 <= math.MaxUint32) {
			t.Fatalf("a sample out of bounds passed: %+v", in)
		}
	})
}
