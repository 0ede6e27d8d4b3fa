package render

import (
	"math"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rendermesh/rendermesh/render/input"
)

// nowMS is the pinger's clock on the wire: unix milliseconds.
func nowMS() float64 { return float64(time.Now().UnixNano()) / 1e6 }

// InputSink is implemented by a Source that takes the consumer's input (scene.CommandSource
// writes each event to its command's standard input): every event but pings, as a JSON line.
type InputSink interface {
	Input(event []byte)
}

// inputState is the container's view of the consumer's input: the events folded into an
// input.State, the pointer's Kalman filter, and the input round trip it measures with its own pings
// (the prediction horizon).
type inputState struct {
	// sink, when set, receives every input event as it came (a real application's source).
	sink    InputSink
	mu      sync.Mutex
	state   input.State
	pred    *input.Predictor
	predict bool
	began   time.Time
	last    time.Time // when the last pointer sample arrived
	invalid int
	pinger  *pinger
}

func newInputState(predict bool) *inputState {
	p, _ := input.NewPredictor(input.PredictorConfig{}) // defaults are valid
	return &inputState{pred: p, predict: predict, began: time.Now(), pinger: newPinger()}
}

// receive handles one message of the input channel: answers pings, records pongs, applies input.
func (s *inputState) receive(dc *webrtc.DataChannel, data []byte) {
	e, err := input.Decode(data)
	if err != nil {
		s.mu.Lock()
		s.invalid++
		s.mu.Unlock()
		return
	}
	if s.pinger.handle(dc, e) {
		return
	}
	if s.sink != nil {
		s.sink.Input(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Apply(e)
	if e.Type == input.TypeMove {
		now := time.Now()
		s.pred.Observe(e.X, e.Y, now.Sub(s.began))
		s.last = now
	}
}

// pointer is where to draw the consumer's cursor: predicted one round trip (plus the time since the
// last sample) ahead when prediction is on and the round trip is known.
func (s *inputState) pointer() (x, y float64, visible bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.state.Pointer {
		return 0, 0, false
	}
	rtt := s.pinger.p50()
	if !s.predict || rtt == 0 {
		return s.state.X, s.state.Y, true
	}
	x, y = s.pred.Predict(rtt + time.Since(s.last))
	return x, y, true
}

func (s *inputState) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Events
}

// pinger measures the input round trip over the data channel and answers the other side's pings.
type pinger struct {
	mu      sync.Mutex
	next    uint32
	rtt     input.RTT
	samples []time.Duration
}

func newPinger() *pinger { return &pinger{} }

// ping sends one ping.
func (p *pinger) ping(dc *webrtc.DataChannel) error {
	p.mu.Lock()
	p.next++
	id := p.next
	p.mu.Unlock()
	b, err := input.Encode(input.Event{Type: input.TypePing, ID: id, TS: nowMS()})
	if err != nil {
		return err
	}
	return dc.Send(b)
}

// receive decodes a message and handles it if it is a ping or a pong.
func (p *pinger) receive(dc *webrtc.DataChannel, data []byte) {
	if e, err := input.Decode(data); err == nil {
		p.handle(dc, e)
	}
}

// handle answers a ping or records a pong; false for any other event.
func (p *pinger) handle(dc *webrtc.DataChannel, e input.Event) bool {
	if pong, ok := input.Reply(e); ok {
		if b, err := input.Encode(pong); err == nil {
			_ = dc.Send(b)
		}
		return true
	}
	if d, ok := input.Since(e, nowMS()); ok {
		p.mu.Lock()
		p.rtt.Observe(d)
		if len(p.samples) < 1<<16 {
			p.samples = append(p.samples, d)
		}
		p.mu.Unlock()
		return true
	}
	return e.Type == input.TypePong
}

func (p *pinger) p50() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rtt.Count() == 0 {
		return 0
	}
	return p.rtt.P50()
}

func (p *pinger) all() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.samples...)
}

// sendPointer moves a synthetic pointer around a circle, one lap every three seconds.
func sendPointer(dc *webrtc.DataChannel, elapsed time.Duration) error {
	a := 2 * math.Pi * elapsed.Seconds() / 3
	b, err := input.Encode(input.Event{Type: input.TypeMove, X: 0.5 + 0.3*math.Cos(a), Y: 0.5 + 0.3*math.Sin(a), TS: nowMS()})
	if err != nil {
		return err
	}
	return dc.Send(b)
}
