package input

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The wire format. One JSON object per data-channel message; "t" names the event, "ts" is the
// sender's clock in milliseconds (a float: the browser sends performance.now()). Each type has
// exactly these keys, no more, no fewer:
//
//	{"t":"move","x":0.5,"y":0.25,"ts":1234.5}        pointer, normalized to the video: 0..1
//	{"t":"down","b":0,"ts":1234.5}                    mouse button pressed, 0..4 (MouseEvent.button)
//	{"t":"up","b":0,"ts":1234.5}                      mouse button released
//	{"t":"wheel","dx":0,"dy":-120,"ts":1234.5}        wheel travel (WheelEvent.deltaX/deltaY)
//	{"t":"key","k":"KeyW","d":true,"ts":1234.5}       KeyboardEvent.code, d: down (true) or up
//	{"t":"pad","i":0,"axes":[0,-1],"btn":[0,1],"ts":1234.5}  gamepad i: ≤8 axes in -1..1, ≤32 buttons in 0..1
//	{"t":"ping","id":7,"ts":1234.5}                   either side; answered at once with
//	{"t":"pong","id":7,"ts":1234.5}                   the same id and ts
//
// Moves are sent at most once per animation frame. A browser sends nothing while the pointer
// rests, so the sender marks a rest with one more move at the last position and a later ts, about
// 30 ms after the pointer stopped (app.js does): it tells the Predictor the pointer stopped.
const (
	// MaxSize is the largest message, in bytes, either way.
	MaxSize = 1024
	// MaxButton is the highest mouse button number (0 main, 1 middle, 2 secondary, 3 back, 4 forward).
	MaxButton = 4
	// MaxKeyLen is the longest key code.
	MaxKeyLen = 32
	// MaxPads is how many gamepads are told apart: indexes 0..MaxPads-1 (Chromium's slots).
	MaxPads = 4
	// MaxAxes and MaxPadButtons bound a gamepad's state.
	MaxAxes       = 8
	MaxPadButtons = 32
	// MaxTS is the largest timestamp, in ms: 2^53, the largest integer a JavaScript number holds
	// exactly. Unix milliseconds fit.
	MaxTS = 1 << 53
)

// Type names an event on the wire.
type Type string

// The event types.
const (
	TypeMove  Type = "move"
	TypeDown  Type = "down"
	TypeUp    Type = "up"
	TypeWheel Type = "wheel"
	TypeKey   Type = "key"
	TypePad   Type = "pad"
	TypePing  Type = "ping"
	TypePong  Type = "pong"
)

// Event is one input message. Type says which of the other fields mean something; the rest are zero.
type Event struct {
	Type Type
	// TS is the sender's clock in milliseconds when it sent the event (every type).
	TS float64
	// X, Y (move) is the pointer position in the video, 0..1 from the top-left corner.
	X, Y float64
	// Button (down, up) is the mouse button, 0..MaxButton.
	Button int
	// DX, DY (wheel) is the wheel travel, in the browser's delta units.
	DX, DY float64
	// Code (key) is the KeyboardEvent.code: letters and digits only, 1..MaxKeyLen of them.
	Code string
	// Down (key) is true for a press, false for a release.
	Down bool
	// Pad (pad) is the gamepad's index, 0..MaxPads-1.
	Pad int
	// Axes (pad, ≤MaxAxes values in -1..1) and Buttons (pad, ≤MaxPadButtons values in 0..1) are the
	// gamepad's whole state.
	Axes, Buttons []float64
	// ID (ping, pong) matches a pong to its ping.
	ID uint32
}

var (
	// ErrInvalid is wrapped by every error about a malformed or out-of-range event.
	ErrInvalid = errors.New("input: invalid event")
	// ErrTooLarge is wrapped (with ErrInvalid) when a message is longer than MaxSize.
	ErrTooLarge = errors.New("input: message too large")
)

// keys lists, per type, the keys a message carries besides "t" and "ts".
var keys = map[Type][]string{
	TypeMove:  {"x", "y"},
	TypeDown:  {"b"},
	TypeUp:    {"b"},
	TypeWheel: {"dx", "dy"},
	TypeKey:   {"k", "d"},
	TypePad:   {"i", "axes", "btn"},
	TypePing:  {"id"},
	TypePong:  {"id"},
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode parses one message. It is strict: an unknown type, a missing, extra, null or out-of-range
// field, trailing bytes or more than MaxSize bytes (as sent, or once re-encoded) is an error that
// wraps ErrInvalid.
func Decode(b []byte) (Event, error) {
	if len(b) > MaxSize {
		return Event{}, fmt.Errorf("%w: %w: %d bytes, the limit is %d", ErrInvalid, ErrTooLarge, len(b), MaxSize)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return Event{}, invalid("not a JSON object: %v", err)
	}
	var t string
	if err := field(m, "t", &t); err != nil {
		return Event{}, err
	}
	e := Event{Type: Type(t)}
	want, ok := keys[e.Type]
	if !ok {
		return Event{}, invalid("unknown type %q", t)
	}
	for k := range m {
		if k != "t" && k != "ts" && !contains(want, k) {
			return Event{}, invalid("%s: unexpected key %q", t, k)
		}
	}
	if err := field(m, "ts", &e.TS); err != nil {
		return Event{}, err
	}
	var err error
	switch e.Type {
	case TypeMove:
		err = errors.Join(field(m, "x", &e.X), field(m, "y", &e.Y))
	case TypeDown, TypeUp:
		err = field(m, "b", &e.Button)
	case TypeWheel:
		err = errors.Join(field(m, "dx", &e.DX), field(m, "dy", &e.DY))
	case TypeKey:
		err = errors.Join(field(m, "k", &e.Code), field(m, "d", &e.Down))
	case TypePad:
		err = errors.Join(field(m, "i", &e.Pad), floats(m, "axes", MaxAxes, &e.Axes), floats(m, "btn", MaxPadButtons, &e.Buttons))
	case TypePing, TypePong:
		err = field(m, "id", &e.ID)
	}
	if err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	// The canonical form can be longer than what was sent ("1e-6" is written 0.000001), and what
	// Decode accepts must encode.
	var buf [2 * MaxSize]byte
	if n := len(e.append(buf[:0])); n > MaxSize {
		return Event{}, fmt.Errorf("%w: %w: %d bytes once re-encoded, the limit is %d", ErrInvalid, ErrTooLarge, n, MaxSize)
	}
	return e, nil
}

// field decodes m[k] into v: present, not null, of v's type.
func field(m map[string]json.RawMessage, k string, v any) error {
	raw, ok := m[k]
	if !ok {
		return invalid("missing %q", k)
	}
	if string(raw) == "null" {
		return invalid("%q is null", k)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return invalid("%q: %v", k, err)
	}
	return nil
}

// floats decodes m[k], an array of at most max numbers.
func floats(m map[string]json.RawMessage, k string, max int, out *[]float64) error {
	var ps []*float64
	if err := field(m, k, &ps); err != nil {
		return err
	}
	if len(ps) > max {
		return invalid("%q: %d values, at most %d", k, len(ps), max)
	}
	*out = make([]float64, len(ps))
	for i, p := range ps {
		if p == nil {
			return invalid("%q[%d] is null", k, i)
		}
		(*out)[i] = *p
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Validate reports whether e is an event Encode writes and Decode reads back: a known type and
// every field it carries in range. The error wraps ErrInvalid.
func (e Event) Validate() error {
	if _, ok := keys[e.Type]; !ok {
		return invalid("unknown type %q", e.Type)
	}
	if !(e.TS >= 0 && e.TS <= MaxTS) {
		return invalid("%s: ts %v out of [0, 2^53]", e.Type, e.TS)
	}
	switch e.Type {
	case TypeMove:
		if !unit(e.X) || !unit(e.Y) {
			return invalid("move: x, y (%v, %v) out of [0, 1]", e.X, e.Y)
		}
	case TypeDown, TypeUp:
		if e.Button < 0 || e.Button > MaxButton {
			return invalid("%s: button %d out of [0, %d]", e.Type, e.Button, MaxButton)
		}
	case TypeWheel:
		if !finite(e.DX) || !finite(e.DY) {
			return invalid("wheel: dx, dy (%v, %v) not finite", e.DX, e.DY)
		}
	case TypeKey:
		if !keyCode(e.Code) {
			return invalid("key: code %q is not 1..%d letters and digits", e.Code, MaxKeyLen)
		}
	case TypePad:
		if e.Pad < 0 || e.Pad >= MaxPads {
			return invalid("pad: index %d out of [0, %d)", e.Pad, MaxPads)
		}
		if len(e.Axes) > MaxAxes || len(e.Buttons) > MaxPadButtons {
			return invalid("pad: %d axes, %d buttons; at most %d, %d", len(e.Axes), len(e.Buttons), MaxAxes, MaxPadButtons)
		}
		for i, a := range e.Axes {
			if !(a >= -1 && a <= 1) {
				return invalid("pad: axis %d = %v out of [-1, 1]", i, a)
			}
		}
		for i, b := range e.Buttons {
			if !unit(b) {
				return invalid("pad: button %d = %v out of [0, 1]", i, b)
			}
		}
	}
	return nil
}

func unit(v float64) bool   { return v >= 0 && v <= 1 } // false for NaN
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func keyCode(s string) bool {
	if len(s) == 0 || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Encode writes e in its canonical form: keys in the order of the table above, no spaces, numbers
// as encoding/json writes them. An invalid event, or one longer than MaxSize, is an error.
func Encode(e Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b := e.append(make([]byte, 0, 64))
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %w: %s is %d bytes, the limit is %d", ErrInvalid, ErrTooLarge, e.Type, len(b), MaxSize)
	}
	return b, nil
}

// append writes e, which is valid, to b.
func (e Event) append(b []byte) []byte {
	b = append(b, `{"t":"`...)
	b = append(b, e.Type...)
	b = append(b, '"')
	switch e.Type {
	case TypeMove:
		b = num(append(b, `,"x":`...), e.X)
		b = num(append(b, `,"y":`...), e.Y)
	case TypeDown, TypeUp:
		b = strconv.AppendInt(append(b, `,"b":`...), int64(e.Button), 10)
	case TypeWheel:
		b = num(append(b, `,"dx":`...), e.DX)
		b = num(append(b, `,"dy":`...), e.DY)
	case TypeKey:
		b = append(append(append(b, `,"k":"`...), e.Code...), '"')
		b = strconv.AppendBool(append(b, `,"d":`...), e.Down)
	case TypePad:
		b = strconv.AppendInt(append(b, `,"i":`...), int64(e.Pad), 10)
		b = nums(append(b, `,"axes":`...), e.Axes)
		b = nums(append(b, `,"btn":`...), e.Buttons)
	case TypePing, TypePong:
		b = strconv.AppendUint(append(b, `,"id":`...), uint64(e.ID), 10)
	}
	b = num(append(b, `,"ts":`...), e.TS)
	return append(b, '}')
}

// num appends a finite f the way encoding/json does: %f, or %e for very small or large magnitudes
// with a two-digit negative exponent shortened (1e-07 → 1e-7).
func num(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func nums(b []byte, fs []float64) []byte {
	b = append(b, '[')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = num(b, f)
	}
	return append(b, ']')
}

// Reply is the answer to a ping: a pong with the same id and ts, to send back at once. ok is false
// for any other event.
func Reply(e Event) (pong Event, ok bool) {
	if e.Type != TypePing {
		return Event{}, false
	}
	return Event{Type: TypePong, ID: e.ID, TS: e.TS}, true
}
