package input

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// wireCases are the contract with render/web/static/app.js: each message decodes to the event and
// the event encodes back to canon (the message itself unless canon is set).
var wireCases = []struct {
	name  string
	msg   string
	event Event
	canon string
}{
	{"move", `{"t":"move","x":0.5,"y":0.25,"ts":1234.5}`, Event{Type: TypeMove, X: 0.5, Y: 0.25, TS: 1234.5}, ""},
	{"move corners", `{"t":"move","x":0,"y":1,"ts":0}`, Event{Type: TypeMove, X: 0, Y: 1}, ""},
	{"down", `{"t":"down","b":0,"ts":1}`, Event{Type: TypeDown, Button: 0, TS: 1}, ""},
	{"up forward", `{"t":"up","b":4,"ts":2.25}`, Event{Type: TypeUp, Button: 4, TS: 2.25}, ""},
	{"wheel", `{"t":"wheel","dx":0,"dy":-120,"ts":3}`, Event{Type: TypeWheel, DY: -120, TS: 3}, ""},
	{"key down", `{"t":"key","k":"KeyW","d":true,"ts":4}`, Event{Type: TypeKey, Code: "KeyW", Down: true, TS: 4}, ""},
	{"key up", `{"t":"key","k":"ArrowLeft","d":false,"ts":5}`, Event{Type: TypeKey, Code: "ArrowLeft", TS: 5}, ""},
	{"pad", `{"t":"pad","i":1,"axes":[0,-1,0.5],"btn":[1,0],"ts":6}`,
		Event{Type: TypePad, Pad: 1, Axes: []float64{0, -1, 0.5}, Buttons: []float64{1, 0}, TS: 6}, ""},
	{"pad empty", `{"t":"pad","i":0,"axes":[],"btn":[],"ts":7}`, Event{Type: TypePad, Axes: []float64{}, Buttons: []float64{}, TS: 7}, ""},
	{"ping", `{"t":"ping","id":7,"ts":1234.5}`, Event{Type: TypePing, ID: 7, TS: 1234.5}, ""},
	{"pong", `{"t":"pong","id":4294967295,"ts":8}`, Event{Type: TypePong, ID: math.MaxUint32, TS: 8}, ""},
	{"any key order and spaces", ` { "ts" : 9 , "y":0.75, "x":0.125, "t":"move" } `,
		Event{Type: TypeMove, X: 0.125, Y: 0.75, TS: 9}, `{"t":"move","x":0.125,"y":0.75,"ts":9}`},
	{"exponents", `{"t":"wheel","dx":1e2,"dy":-1.5E-7,"ts":1.7e12}`,
		Event{Type: TypeWheel, DX: 100, DY: -1.5e-7, TS: 1.7e12}, `{"t":"wheel","dx":100,"dy":-1.5e-7,"ts":1700000000000}`},
	{"escaped strings", `{"t":"k\u0065y","k":"Key\u0041","d":true,"ts":1}`,
		Event{Type: TypeKey, Code: "KeyA", Down: true, TS: 1}, `{"t":"key","k":"KeyA","d":true,"ts":1}`},
}

func TestWireFormat(t *testing.T) {
	for _, c := range wireCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.msg))
			if err != nil {
				t.Fatalf("Decode(%s): %v", c.msg, err)
			}
			if !reflect.DeepEqual(got, c.event) {
				t.Fatalf("Decode(%s) = %+v, want %+v", c.msg, got, c.event)
			}
			b, err := Encode(got)
			if err != nil {
				t.Fatalf("Encode(%+v): %v", got, err)
			}
			want := c.canon
			if want == "" {
				want = c.msg
			}
			if string(b) != want {
				t.Fatalf("Encode = %s, want %s", b, want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	big := `{"t":"wheel","dx":0,"dy":0,"ts":1` + strings.Repeat(" ", MaxSize) + `}`
	cases := []struct{ name, msg string }{
		{"empty", ``},
		{"not json", `move`},
		{"array", `[1]`},
		{"null", `null`},
		{"trailing", `{"t":"ping","id":1,"ts":1}{}`},
		{"no type", `{"x":0.5,"y":0.5,"ts":1}`},
		{"unknown type", `{"t":"jump","ts":1}`},
		{"type not a string", `{"t":1,"ts":1}`},
		{"no ts", `{"t":"down","b":0}`},
		{"null ts", `{"t":"down","b":0,"ts":null}`},
		{"negative ts", `{"t":"down","b":0,"ts":-1}`},
		{"huge ts", `{"t":"down","b":0,"ts":1e300}`},
		{"number overflow", `{"t":"down","b":0,"ts":1e400}`},
		{"ts a string", `{"t":"down","b":0,"ts":"1"}`},
		{"extra key", `{"t":"down","b":0,"ts":1,"x":0}`},
		{"key of another type", `{"t":"move","x":0,"y":0,"ts":1,"b":0}`},
		{"keys are case sensitive", `{"t":"move","X":0,"y":0,"ts":1}`},
		{"move missing y", `{"t":"move","x":0.5,"ts":1}`},
		{"move x > 1", `{"t":"move","x":1.0001,"y":0,"ts":1}`},
		{"move y < 0", `{"t":"move","x":0,"y":-0.1,"ts":1}`},
		{"move x null", `{"t":"move","x":null,"y":0,"ts":1}`},
		{"button 5", `{"t":"down","b":5,"ts":1}`},
		{"button -1", `{"t":"up","b":-1,"ts":1}`},
		{"button float", `{"t":"up","b":1.5,"ts":1}`},
		{"button 1.0", `{"t":"up","b":1.0,"ts":1}`},
		{"wheel dy missing", `{"t":"wheel","dx":0,"ts":1}`},
		{"key empty", `{"t":"key","k":"","d":true,"ts":1}`},
		{"key too long", `{"t":"key","k":"` + strings.Repeat("A", MaxKeyLen+1) + `","d":true,"ts":1}`},
		{"key with space", `{"t":"key","k":"Key W","d":true,"ts":1}`},
		{"key d not bool", `{"t":"key","k":"KeyW","d":1,"ts":1}`},
		{"pad index", `{"t":"pad","i":4,"axes":[],"btn":[],"ts":1}`},
		{"pad axis > 1", `{"t":"pad","i":0,"axes":[1.5],"btn":[],"ts":1}`},
		{"pad button < 0", `{"t":"pad","i":0,"axes":[],"btn":[-0.5],"ts":1}`},
		{"pad null value", `{"t":"pad","i":0,"axes":[null],"btn":[],"ts":1}`},
		{"pad too many axes", `{"t":"pad","i":0,"axes":[0,0,0,0,0,0,0,0,0],"btn":[],"ts":1}`},
		{"pad too many buttons", `{"t":"pad","i":0,"axes":[],"btn":[` + strings.Repeat("0,", MaxPadButtons) + `0],"ts":1}`},
		{"pad axes not array", `{"t":"pad","i":0,"axes":0,"btn":[],"ts":1}`},
		{"ping id negative", `{"t":"ping","id":-1,"ts":1}`},
		{"ping id > uint32", `{"t":"ping","id":4294967296,"ts":1}`},
		{"oversize", big},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Decode([]byte(c.msg))
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want an error", c.msg, e)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%s): %v does not wrap ErrInvalid", c.msg, err)
			}
		})
	}
	if _, err := Decode([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v does not wrap ErrTooLarge", err)
	}
}

// A message that fits as sent but not once re-encoded is refused, so what Decode accepts always
// encodes: 1e-6 is short on the wire and 0.000001 canonically.
func TestDecodeRejectsWhatWouldNotReencode(t *testing.T) {
	v := "1.2345678901234567e-6" // canonically 0.0000012345678901234567
	msg := `{"t":"pad","i":0,"axes":[` + strings.TrimSuffix(strings.Repeat(v+",", MaxAxes), ",") +
		`],"btn":[` + strings.TrimSuffix(strings.Repeat(v+",", MaxPadButtons), ",") + `],"ts":1}`
	if len(msg) > MaxSize {
		t.Fatalf("test message is %d bytes; it must fit", len(msg))
	}
	if _, err := Decode([]byte(msg)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode: %v, want ErrTooLarge", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	cases := []struct {
		name string
		e    Event
	}{
		{"zero", Event{}},
		{"unknown type", Event{Type: "jump"}},
		{"NaN x", Event{Type: TypeMove, X: math.NaN()}},
		{"NaN ts", Event{Type: TypePing, TS: math.NaN()}},
		{"inf wheel", Event{Type: TypeWheel, DX: math.Inf(1)}},
		{"key code", Event{Type: TypeKey, Code: `"}`}},
		{"pad axes", Event{Type: TypePad, Axes: make([]float64, MaxAxes+1)}},
		{"pad NaN button", Event{Type: TypePad, Buttons: []float64{math.NaN()}}},
		{"pad index", Event{Type: TypePad, Pad: -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if b, err := Encode(c.e); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode(%+v) = %s, %v; want ErrInvalid", c.e, b, err)
			}
		})
	}
}

// The largest pad a browser sends fits with room to spare.
func TestFullPadFits(t *testing.T) {
	e := Event{Type: TypePad, Pad: MaxPads - 1, TS: 1.7e12 + 0.123456789}
	for range MaxAxes {
		e.Axes = append(e.Axes, -0.12345678901234568)
	}
	for range MaxPadButtons {
		e.Buttons = append(e.Buttons, 0.12345678901234568)
	}
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full pad: %d bytes", len(b))
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
}

func TestReply(t *testing.T) {
	pong, ok := Reply(Event{Type: TypePing, ID: 9, TS: 12.5})
	if !ok || !reflect.DeepEqual(pong, Event{Type: TypePong, ID: 9, TS: 12.5}) {
		t.Fatalf("Reply(ping) = %+v, %v", pong, ok)
	}
	if _, ok := Reply(Event{Type: TypePong, ID: 9}); ok {
		t.Fatal("Reply(pong) answered")
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range wireCases {
		f.Add([]byte(c.msg))
	}
	f.Add([]byte(`{"t":"pad","i":3,"axes":[-1,1,0,0,0,0,0,0],"btn":[0,1,0.5],"ts":1e-7}`))
	f.Add([]byte(`{"t":"move","x":-0,"y":1e-300,"ts":0}`))
	f.Add([]byte(`{"t":"key","k":"KeyW","d":true,"ts":1,"t":"ping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%q): %v does not wrap ErrInvalid", b, err)
			}
			return
		}
		b2, err := Encode(e)
		if err != nil {
			t.Fatalf("Decode(%q) = %+v, which does not encode: %v", b, e, err)
		}
		e2, err := Decode(b2)
		if err != nil {
			t.Fatalf("canonical %s does not decode: %v", b2, err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event: %+v → %s → %+v", e, b2, e2)
		}
		b3, err := Encode(e2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("canonical form not stable: %s → %s, %v", b2, b3, err)
		}
	})
}
