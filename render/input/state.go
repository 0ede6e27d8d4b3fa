package input

import (
	"slices"
)

// MaxKeysDown bounds how many keys State holds down at once; presses beyond it are dropped, so a
// peer cannot grow the set without end.
const MaxKeysDown = 32

// State is the input a renderer reads each frame, folded from the events that arrived since the
// session began. The zero State has the pointer nowhere, nothing held and no gamepads; it is not
// safe for concurrent use.
type State struct {
	// X, Y is the pointer's last position (0..1); Pointer is false until the first move.
	X, Y    float64
	Pointer bool
	// Buttons has bit b set while mouse button b is held.
	Buttons uint8
	// WheelDX, WheelDY is the wheel travel not yet taken (see TakeWheel).
	WheelDX, WheelDY float64
	// Pads is the last state each gamepad sent.
	Pads [MaxPads]Pad
	// LastTS is the ts of the last event applied (sender's clock, ms).
	LastTS float64
	// Events counts the events applied.
	Events int

	keys map[string]struct{}
}

// Pad is one gamepad's last state.
type Pad struct {
	Connected     bool
	Axes, Buttons []float64
}

// Apply folds e into s. Pings and pongs change nothing but LastTS and Events; e is assumed valid
// (it came from Decode).
func (s *State) Apply(e Event) {
	s.Events++
	s.LastTS = e.TS
	switch e.Type {
	case TypeMove:
		s.X, s.Y, s.Pointer = e.X, e.Y, true
	case TypeDown:
		s.Buttons |= 1 << e.Button
	case TypeUp:
		s.Buttons &^= 1 << e.Button
	case TypeWheel:
		s.WheelDX += e.DX
		s.WheelDY += e.DY
	case TypeKey:
		if !e.Down {
			delete(s.keys, e.Code)
			return
		}
		if s.keys == nil {
			s.keys = make(map[string]struct{})
		}
		if _, held := s.keys[e.Code]; held || len(s.keys) < MaxKeysDown {
			s.keys[e.Code] = struct{}{}
		}
	case TypePad:
		if e.Pad >= 0 && e.Pad < MaxPads {
			s.Pads[e.Pad] = Pad{Connected: true, Axes: slices.Clone(e.Axes), Buttons: slices.Clone(e.Buttons)}
		}
	}
}

// ButtonDown reports whether mouse button b is held.
func (s *State) ButtonDown(b int) bool { return b >= 0 && b <= MaxButton && s.Buttons&(1<<b) != 0 }

// KeyDown reports whether the key with this KeyboardEvent.code is held.
func (s *State) KeyDown(code string) bool {
	_, ok := s.keys[code]
	return ok
}

// Keys returns the codes of the keys held, sorted.
func (s *State) Keys() []string {
	out := make([]string, 0, len(s.keys))
	for k := range s.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TakeWheel returns the wheel travel since the last call and zeroes it.
func (s *State) TakeWheel() (dx, dy float64) {
	dx, dy = s.WheelDX, s.WheelDY
	s.WheelDX, s.WheelDY = 0, 0
	return dx, dy
}

// Release lets go of every key and button (the channel closed, or the page lost focus); the
// pointer and gamepads stay as they were.
func (s *State) Release() {
	s.Buttons = 0
	clear(s.keys)
}
