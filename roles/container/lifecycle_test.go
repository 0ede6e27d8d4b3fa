package container

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

var allStates = []pb.ContainerState{
	stateConfiguring, stateAwaitingCheck, stateStandby, stateBusy,
	stateNeedsRecheck, stateLocked, stateOffline,
}

var allEvents = []Event{
	EvConfigured, EvCheckPassed, EvCheckFailed, EvSessionStarted, EvSessionEnded,
	EvLock, EvUnlock, EvHeartbeatMissed, EvHeartbeatResumed, EvRestarted,
}

// refused marks a transition that Next must refuse.
const refused = pb.ContainerState(-1)

// lifecycleSpec is the whole transition table: every valid state against
// every event. An entry is the state Next moves to, or refused.
var lifecycleSpec = map[pb.ContainerState]map[Event]pb.ContainerState{
	stateConfiguring: {
		EvConfigured:       stateAwaitingCheck,
		EvCheckPassed:      refused,
		EvCheckFailed:      refused,
		EvSessionStarted:   refused,
		EvSessionEnded:     refused,
		EvLock:             stateLocked,
		EvUnlock:           refused,
		EvHeartbeatMissed:  refused,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateConfiguring,
	},
	stateAwaitingCheck: {
		EvConfigured:       refused,
		EvCheckPassed:      stateStandby,
		EvCheckFailed:      stateNeedsRecheck,
		EvSessionStarted:   refused,
		EvSessionEnded:     refused,
		EvLock:             stateLocked,
		EvUnlock:           refused,
		EvHeartbeatMissed:  stateOffline,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateAwaitingCheck,
	},
	stateStandby: {
		EvConfigured:       refused,
		EvCheckPassed:      stateStandby, // idle check
		EvCheckFailed:      stateNeedsRecheck,
		EvSessionStarted:   stateBusy,
		EvSessionEnded:     refused,
		EvLock:             stateLocked,
		EvUnlock:           refused,
		EvHeartbeatMissed:  stateOffline,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateStandby,
	},
	stateBusy: {
		EvConfigured:       refused,
		EvCheckPassed:      stateBusy, // in-session check
		EvCheckFailed:      stateNeedsRecheck,
		EvSessionStarted:   refused,
		EvSessionEnded:     stateStandby,
		EvLock:             refused, // ErrBusy
		EvUnlock:           refused,
		EvHeartbeatMissed:  stateOffline,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateStandby, // a session does not survive a restart
	},
	stateNeedsRecheck: {
		EvConfigured:       refused,
		EvCheckPassed:      stateStandby,
		EvCheckFailed:      stateNeedsRecheck,
		EvSessionStarted:   refused,
		EvSessionEnded:     refused,
		EvLock:             stateLocked,
		EvUnlock:           refused,
		EvHeartbeatMissed:  stateOffline,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateNeedsRecheck,
	},
	stateLocked: {
		EvConfigured:       refused,
		EvCheckPassed:      refused,
		EvCheckFailed:      refused,
		EvSessionStarted:   refused,
		EvSessionEnded:     refused,
		EvLock:             refused,
		EvUnlock:           stateAwaitingCheck, // maintenance: check again
		EvHeartbeatMissed:  refused,
		EvHeartbeatResumed: refused,
		EvRestarted:        stateLocked,
	},
	stateOffline: {
		EvConfigured:       refused,
		EvCheckPassed:      refused,
		EvCheckFailed:      refused,
		EvSessionStarted:   refused,
		EvSessionEnded:     refused,
		EvLock:             stateLocked,
		EvUnlock:           refused,
		EvHeartbeatMissed:  refused,
		EvHeartbeatResumed: stateAwaitingCheck,
		EvRestarted:        stateAwaitingCheck,
	},
}

func TestNextEveryStateAndEvent(t *testing.T) {
	for _, from := range allStates {
		for _, ev := range allEvents {
			want, ok := lifecycleSpec[from][ev]
			if !ok {
				t.Fatalf("spec table has no entry for %s on %s", StateName(from), ev)
			}
			t.Run(StateName(from)+"/"+ev.String(), func(t *testing.T) {
				got, err := Next(from, ev)
				if want != refused {
					if err != nil || got != want {
						t.Fatalf("Next(%s, %s) = %s, %v; want %s, nil",
							StateName(from), ev, StateName(got), err, StateName(want))
					}
					return
				}
				checkRefused(t, from, ev, got, err)
			})
		}
	}
}

func checkRefused(t *testing.T, from pb.ContainerState, ev Event, got pb.ContainerState, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Next(%s, %s) = %s, nil; want refused", StateName(from), ev, StateName(got))
	}
	if got != from {
		t.Errorf("refused Next(%s, %s) returned state %s; want it unchanged", StateName(from), ev, StateName(got))
	}
	if !errors.Is(err, ErrTransition) {
		t.Errorf("error %v does not match ErrTransition", err)
	}
	var te *TransitionError
	if !errors.As(err, &te) || te.From != from || te.Event != ev {
		t.Errorf("error %v is not a TransitionError{%s, %s}", err, StateName(from), ev)
	}
	wantBusy := from == stateBusy && ev == EvLock
	if errors.Is(err, ErrBusy) != wantBusy {
		t.Errorf("errors.Is(%v, ErrBusy) = %v; want %v", err, !wantBusy, wantBusy)
	}
}

func TestNextUnspecifiedAndUnknownRefuseEverything(t *testing.T) {
	for _, from := range []pb.ContainerState{stateUnspecified, 8, -3} {
		for _, ev := range allEvents {
			got, err := Next(from, ev)
			checkRefused(t, from, ev, got, err)
		}
	}
	for _, from := range allStates {
		for _, ev := range []Event{0, EvRestarted + 1, -1} {
			got, err := Next(from, ev)
			checkRefused(t, from, ev, got, err)
		}
	}
}

func TestTransitionErrorMessage(t *testing.T) {
	_, err := Next(stateBusy, EvLock)
	if got, want := err.Error(), "container: cannot lock in state busy"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	_, err = Next(stateUnspecified, EvHeartbeatResumed)
	if got, want := err.Error(), "container: cannot heartbeat_resumed in state unspecified"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

func TestEventString(t *testing.T) {
	want := []string{
		"configured", "check_passed", "check_failed", "session_started", "session_ended",
		"lock", "unlock", "heartbeat_missed", "heartbeat_resumed", "restarted",
	}
	if len(want) != len(allEvents) {
		t.Fatalf("test lists %d names for %d events", len(want), len(allEvents))
	}
	for i, ev := range allEvents {
		if got := ev.String(); got != want[i] {
			t.Errorf("Event(%d).String() = %q; want %q", int(ev), got, want[i])
		}
	}
	if got := Event(0).String(); got != "event(0)" {
		t.Errorf("Event(0).String() = %q", got)
	}
	if got := Event(99).String(); got != "event(99)" {
		t.Errorf("Event(99).String() = %q", got)
	}
}

func TestGroupOf(t *testing.T) {
	tests := []struct {
		state pb.ContainerState
		want  Group
	}{
		{stateConfiguring, GroupSettingUp},
		{stateAwaitingCheck, GroupSettingUp},
		{stateStandby, GroupReady},
		{stateBusy, GroupBusy},
		{stateNeedsRecheck, GroupSettingUp},
		{stateLocked, GroupSettingUp},
		{stateOffline, GroupOffline},
		{stateUnspecified, GroupOffline}, // unknown: not schedulable
		{42, GroupOffline},
	}
	for _, tt := range tests {
		if got := GroupOf(tt.state); got != tt.want {
			t.Errorf("GroupOf(%s) = %q; want %q", StateName(tt.state), got, tt.want)
		}
	}
}

func TestStateNameParseStateRoundTrip(t *testing.T) {
	want := []string{"configuring", "awaiting_check", "standby", "busy", "needs_recheck", "locked", "offline"}
	for i, s := range allStates {
		name := StateName(s)
		if name != want[i] {
			t.Errorf("StateName(%d) = %q; want %q", int32(s), name, want[i])
		}
		got, err := ParseState(name)
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %v, nil", name, got, err, s)
		}
	}
	for _, name := range []string{"", "unspecified", "state(9)", "Standby", " standby", "STANDBY",
		"CONTAINER_STATE_STANDBY", "ready", "setting_up"} {
		got, err := ParseState(name)
		if !errors.Is(err, ErrUnknownState) || got != stateUnspecified {
			t.Errorf("ParseState(%q) = %v, %v; want UNSPECIFIED, ErrUnknownState", name, got, err)
		}
	}
	if got := StateName(stateUnspecified); got != "unspecified" {
		t.Errorf("StateName(UNSPECIFIED) = %q", got)
	}
	if got := StateName(9); got != "state(9)" {
		t.Errorf("StateName(9) = %q", got)
	}
}

func TestMarshalStateRoundTrip(t *testing.T) {
	for _, s := range allStates {
		b := MarshalState(s)
		got, err := UnmarshalState(b)
		if err != nil || got != s {
			t.Errorf("UnmarshalState(MarshalState(%s)) = %v, %v", StateName(s), got, err)
		}
	}
}

func TestUnmarshalStateGarbage(t *testing.T) {
	for _, b := range [][]byte{
		nil, {}, {0}, {3}, {0xff, 0xfe}, []byte("standby\n"), []byte("busy\x00"),
		MarshalState(stateUnspecified), MarshalState(99), []byte(strings.Repeat("x", 1000)),
	} {
		got, err := UnmarshalState(b)
		if !errors.Is(err, ErrUnknownState) || got != stateUnspecified {
			t.Errorf("UnmarshalState(%q) = %v, %v; want UNSPECIFIED, ErrUnknownState", b, got, err)
			continue
		}
		if len(err.Error()) > 200 {
			t.Errorf("error for %d bytes is %d characters long; untrusted input should be cut short",
				len(b), len(err.Error()))
		}
	}
}

func FuzzUnmarshalState(f *testing.F) {
	for _, s := range allStates {
		f.Add(MarshalState(s))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Add([]byte("unspecified"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalState(b)
		if err != nil {
			if !errors.Is(err, ErrUnknownState) || s != stateUnspecified {
				t.Fatalf("UnmarshalState(%q) = %v, %v", b, s, err)
			}
			return
		}
		// Only the canonical encoding of a valid state decodes.
		if !validState(s) || string(MarshalState(s)) != string(b) {
			t.Fatalf("UnmarshalState(%q) = %v, which does not re-encode to the input", b, s)
		}
	})
}

func TestLifecycle(t *testing.T) {
	l := NewLifecycle(stateConfiguring)
	steps := []struct {
		ev      Event
		want    pb.ContainerState
		wantErr error
	}{
		{EvConfigured, stateAwaitingCheck, nil},
		{EvCheckPassed, stateStandby, nil},
		{EvSessionStarted, stateBusy, nil},
		{EvLock, stateBusy, ErrBusy},
		{EvSessionEnded, stateStandby, nil},
		{EvLock, stateLocked, nil},
		{EvLock, stateLocked, ErrTransition},
		{EvUnlock, stateAwaitingCheck, nil},
		{EvHeartbeatMissed, stateOffline, nil},
		{EvRestarted, stateAwaitingCheck, nil},
	}
	for i, st := range steps {
		got, err := l.Apply(st.ev)
		if got != st.want || !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("step %d: Apply(%s) = %s, %v; want %s, %v", i, st.ev, StateName(got), err, StateName(st.want), st.wantErr)
		}
		if l.State() != got {
			t.Fatalf("step %d: State() = %s after Apply returned %s", i, StateName(l.State()), StateName(got))
		}
	}
}

func TestLifecycleConcurrentApply(t *testing.T) {
	l := NewLifecycle(stateStandby)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Apply(EvSessionStarted)
				l.Apply(EvCheckPassed)
				l.Apply(EvSessionEnded)
				_ = l.State()
			}
		})
	}
	wg.Wait()
	if s := l.State(); s != stateStandby && s != stateBusy {
		t.Fatalf("state after concurrent sessions = %s; want standby or busy", StateName(s))
	}
}
