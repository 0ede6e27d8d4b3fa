package input

import (
	"fmt"
	"reflect"
	"testing"
)

func TestState(t *testing.T) {
	key := func(code string, down bool) Event { return Event{Type: TypeKey, Code: code, Down: down} }
	type want struct {
		x, y    float64
		pointer bool
		buttons uint8
		keys    []string
	}
	cases := []struct {
		name   string
		events []Event
		want   want
	}{
		{"nothing", nil, want{keys: []string{}}},
		{"move", []Event{{Type: TypeMove, X: 0.25, Y: 0.75}}, want{x: 0.25, y: 0.75, pointer: true, keys: []string{}}},
		{"last move wins", []Event{{Type: TypeMove, X: 0.25, Y: 0.75}, {Type: TypeMove, X: 1, Y: 0}}, want{x: 1, pointer: true, keys: []string{}}},
		{"buttons", []Event{{Type: TypeDown, Button: 0}, {Type: TypeDown, Button: 2}, {Type: TypeDown, Button: 4}, {Type: TypeUp, Button: 2}},
			want{buttons: 1<<0 | 1<<4, keys: []string{}}},
		{"up without down", []Event{{Type: TypeUp, Button: 3}}, want{keys: []string{}}},
		{"keys", []Event{key("KeyW", true), key("ShiftLeft", true), key("KeyA", true), key("KeyW", false)},
			want{keys: []string{"KeyA", "ShiftLeft"}}},
		{"key repeat", []Event{key("KeyW", true), key("KeyW", true), key("KeyW", false)}, want{keys: []string{}}},
		{"pings change nothing", []Event{{Type: TypePing, ID: 1}, {Type: TypePong, ID: 1}}, want{keys: []string{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s State
			for _, e := range c.events {
				s.Apply(e)
			}
			got := want{s.X, s.Y, s.Pointer, s.Buttons, s.Keys()}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("state = %+v, want %+v", got, c.want)
			}
			if s.Events != len(c.events) {
				t.Fatalf("Events = %d, want %d", s.Events, len(c.events))
			}
		})
	}
}

func TestStateWheelPadsAndRelease(t *testing.T) {
	var s State
	s.Apply(Event{Type: TypeWheel, DX: 1, DY: -120, TS: 1})
	s.Apply(Event{Type: TypeWheel, DY: -120, TS: 2})
	if dx, dy := s.TakeWheel(); dx != 1 || dy != -240 {
		t.Fatalf("TakeWheel = %v, %v", dx, dy)
	}
	if dx, dy := s.TakeWheel(); dx != 0 || dy != 0 {
		t.Fatalf("second TakeWheel = %v, %v", dx, dy)
	}

	axes := []float64{0.5, -1}
	s.Apply(Event{Type: TypePad, Pad: 2, Axes: axes, Buttons: []float64{1}, TS: 3})
	axes[0] = 0 // the state holds its own copy
	if p := s.Pads[2]; !p.Connected || !reflect.DeepEqual(p.Axes, []float64{0.5, -1}) || !reflect.DeepEqual(p.Buttons, []float64{1}) {
		t.Fatalf("pad 2 = %+v", p)
	}
	if s.Pads[0].Connected || s.LastTS != 3 {
		t.Fatalf("pad 0 = %+v, LastTS %v", s.Pads[0], s.LastTS)
	}

	s.Apply(Event{Type: TypeDown, Button: 1})
	s.Apply(Event{Type: TypeKey, Code: "Space", Down: true})
	s.Apply(Event{Type: TypeMove, X: 0.5, Y: 0.5})
	s.Release()
	if s.Buttons != 0 || len(s.Keys()) != 0 || s.KeyDown("Space") || s.ButtonDown(1) {
		t.Fatalf("after Release: buttons %b, keys %v", s.Buttons, s.Keys())
	}
	if !s.Pointer || s.X != 0.5 || !s.Pads[2].Connected {
		t.Fatal("Release moved the pointer or dropped a pad")
	}
}

func TestStateBoundsKeysHeld(t *testing.T) {
	var s State
	for i := range MaxKeysDown + 10 {
		s.Apply(Event{Type: TypeKey, Code: fmt.Sprintf("Key%d", i), Down: true})
	}
	if n := len(s.Keys()); n != MaxKeysDown {
		t.Fatalf("%d keys held, want the cap %d", n, MaxKeysDown)
	}
	// A key already held can still be pressed again and released.
	s.Apply(Event{Type: TypeKey, Code: "Key0", Down: true})
	s.Apply(Event{Type: TypeKey, Code: "Key0", Down: false})
	if s.KeyDown("Key0") || len(s.Keys()) != MaxKeysDown-1 {
		t.Fatalf("Key0 still held, or keys %d", len(s.Keys()))
	}
}
