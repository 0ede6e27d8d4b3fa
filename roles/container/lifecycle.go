package container

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Short local names for the states of the generated enum.
const (
	stateUnspecified   = pb.ContainerState_CONTAINER_STATE_UNSPECIFIED
	stateConfiguring   = pb.ContainerState_CONTAINER_STATE_CONFIGURING
	stateAwaitingCheck = pb.ContainerState_CONTAINER_STATE_AWAITING_CHECK
	stateStandby       = pb.ContainerState_CONTAINER_STATE_STANDBY
	stateBusy          = pb.ContainerState_CONTAINER_STATE_BUSY
	stateNeedsRecheck  = pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK
	stateLocked        = pb.ContainerState_CONTAINER_STATE_LOCKED
	stateOffline       = pb.ContainerState_CONTAINER_STATE_OFFLINE
)

// Event is something that happens to a container and may move it to
// another state. See Next for the transitions.
type Event int

const (
	// EvConfigured: configuring -> awaiting_check.
	EvConfigured Event = iota + 1
	// EvCheckPassed: awaiting_check|needs_recheck -> standby;
	// standby -> standby (idle check); busy -> busy (in-session check).
	EvCheckPassed
	// EvCheckFailed: awaiting_check|standby|busy|needs_recheck -> needs_recheck.
	EvCheckFailed
	// EvSessionStarted: standby -> busy.
	EvSessionStarted
	// EvSessionEnded: busy -> standby.
	EvSessionEnded
	// EvLock: configuring|awaiting_check|standby|needs_recheck|offline -> locked.
	// Refused from busy (ErrBusy: end the session first) and from locked.
	EvLock
	// EvUnlock: locked -> awaiting_check; after maintenance the machine must
	// be checked again.
	EvUnlock
	// EvHeartbeatMissed: awaiting_check|standby|busy|needs_recheck -> offline.
	// This is an observer's view of the container.
	EvHeartbeatMissed
	// EvHeartbeatResumed: offline -> awaiting_check.
	EvHeartbeatResumed
	// EvRestarted resumes after a process restart: busy -> standby (a
	// session does not survive a restart), offline -> awaiting_check, every
	// other state unchanged.
	EvRestarted
)

var eventNames = [...]string{
	EvConfigured:       "configured",
	EvCheckPassed:      "check_passed",
	EvCheckFailed:      "check_failed",
	EvSessionStarted:   "session_started",
	EvSessionEnded:     "session_ended",
	EvLock:             "lock",
	EvUnlock:           "unlock",
	EvHeartbeatMissed:  "heartbeat_missed",
	EvHeartbeatResumed: "heartbeat_resumed",
	EvRestarted:        "restarted",
}

// String returns the snake_case name of the event, or "event(N)" for a
// value that is not one of the declared events.
func (e Event) String() string {
	if e >= EvConfigured && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("event(%d)", int(e))
}

var (
	// ErrTransition matches every refused transition.
	ErrTransition = errors.New("container: transition not allowed")
	// ErrBusy matches, in addition to ErrTransition, an attempt to lock a
	// container that is rendering: end or wait for the session first.
	ErrBusy = errors.New("container: busy with a session")
	// ErrUnknownState is returned for a state name or persisted value that
	// is not one of the valid states.
	ErrUnknownState = errors.New("container: unknown state")
)

// TransitionError says which event was refused in which state. It matches
// ErrTransition with errors.Is, and also ErrBusy when a lock was refused
// because the container is busy.
type TransitionError struct {
	From  pb.ContainerState
	Event Event
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("container: cannot %s in state %s", e.Event, StateName(e.From))
}

// Unwrap returns ErrTransition.
func (e *TransitionError) Unwrap() error { return ErrTransition }

// Is reports whether target is ErrBusy and this is a lock refused from busy.
// (ErrTransition is matched through Unwrap.)
func (e *TransitionError) Is(target error) bool {
	return target == ErrBusy && e.From == stateBusy && e.Event == EvLock
}

// validState reports whether s is one of the seven lifecycle states.
func validState(s pb.ContainerState) bool {
	return s >= stateConfiguring && s <= stateOffline
}

// Next returns the state a container in state from moves to on event ev.
// It is pure. A refused transition returns from unchanged and a
// *TransitionError; UNSPECIFIED and unknown states refuse every event, and
// so does every state for an unknown event.
func Next(from pb.ContainerState, ev Event) (pb.ContainerState, error) {
	if to, ok := next(from, ev); ok {
		return to, nil
	}
	return from, &TransitionError{From: from, Event: ev}
}

func next(from pb.ContainerState, ev Event) (pb.ContainerState, bool) {
	if !validState(from) {
		return from, false
	}
	switch ev {
	case EvConfigured:
		if from == stateConfiguring {
			return stateAwaitingCheck, true
		}
	case EvCheckPassed:
		switch from {
		case stateAwaitingCheck, stateNeedsRecheck, stateStandby:
			return stateStandby, true
		case stateBusy:
			return stateBusy, true
		}
	case EvCheckFailed:
		switch from {
		case stateAwaitingCheck, stateStandby, stateBusy, stateNeedsRecheck:
			return stateNeedsRecheck, true
		}
	case EvSessionStarted:
		if from == stateStandby {
			return stateBusy, true
		}
	case EvSessionEnded:
		if from == stateBusy {
			return stateStandby, true
		}
	case EvLock:
		switch from {
		case stateConfiguring, stateAwaitingCheck, stateStandby, stateNeedsRecheck, stateOffline:
			return stateLocked, true
		}
	case EvUnlock:
		if from == stateLocked {
			return stateAwaitingCheck, true
		}
	case EvHeartbeatMissed:
		switch from {
		case stateAwaitingCheck, stateStandby, stateBusy, stateNeedsRecheck:
			return stateOffline, true
		}
	case EvHeartbeatResumed:
		if from == stateOffline {
			return stateAwaitingCheck, true
		}
	case EvRestarted:
		switch from {
		case stateBusy:
			return stateStandby, true
		case stateOffline:
			return stateAwaitingCheck, true
		default:
			return from, true
		}
	}
	return from, false
}

var stateNames = [...]string{
	stateConfiguring:   "configuring",
	stateAwaitingCheck: "awaiting_check",
	stateStandby:       "standby",
	stateBusy:          "busy",
	stateNeedsRecheck:  "needs_recheck",
	stateLocked:        "locked",
	stateOffline:       "offline",
}

// StateName returns the snake_case name of a state as the network's spec
// writes it ("standby", "needs_recheck", ...). UNSPECIFIED is "unspecified"
// and any other value outside the enum is "state(N)"; neither parses back.
func StateName(s pb.ContainerState) string {
	switch {
	case validState(s):
		return stateNames[s]
	case s == stateUnspecified:
		return "unspecified"
	default:
		return fmt.Sprintf("state(%d)", int32(s))
	}
}

// ParseState is the inverse of StateName for the seven valid states. Names
// are exact: lowercase, no surrounding space.
func ParseState(name string) (pb.ContainerState, error) {
	for s := stateConfiguring; s <= stateOffline; s++ {
		if stateNames[s] == name {
			return s, nil
		}
	}
	return stateUnspecified, fmt.Errorf("%w %q (want one of configuring, awaiting_check, standby, busy, needs_recheck, locked, offline)",
		ErrUnknownState, truncate(name))
}

// Group is how the dashboard groups containers.
type Group string

const (
	GroupReady     Group = "ready"
	GroupBusy      Group = "busy"
	GroupOffline   Group = "offline"
	GroupSettingUp Group = "setting_up"
)

// GroupOf returns the dashboard group of a state: standby is ready, busy is
// busy, offline is offline, and configuring, awaiting_check, needs_recheck
// and locked are setting up. A state this version does not know (including
// UNSPECIFIED) is shown as offline, since it cannot be scheduled.
func GroupOf(s pb.ContainerState) Group {
	switch s {
	case stateStandby:
		return GroupReady
	case stateBusy:
		return GroupBusy
	case stateConfiguring, stateAwaitingCheck, stateNeedsRecheck, stateLocked:
		return GroupSettingUp
	default:
		return GroupOffline
	}
}

// Lifecycle holds the current state of one container. It is safe for
// concurrent use.
type Lifecycle struct {
	mu    sync.Mutex
	state pb.ContainerState
}

// NewLifecycle returns a lifecycle in state initial (typically CONFIGURING,
// or the state loaded from the datastore after a restart, followed by
// Apply(EvRestarted)). An invalid initial state refuses every event.
func NewLifecycle(initial pb.ContainerState) *Lifecycle {
	return &Lifecycle{state: initial}
}

// State returns the current state.
func (l *Lifecycle) State() pb.ContainerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Apply moves the lifecycle on event ev and returns the new state. A refused
// event leaves the state unchanged and returns it with the error from Next.
func (l *Lifecycle) Apply(ev Event) (pb.ContainerState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	to, err := Next(l.state, ev)
	if err != nil {
		return l.state, err
	}
	l.state = to
	return to, nil
}

// MarshalState encodes a state for a node's datastore as its name (see
// StateName). Invalid states encode to bytes that UnmarshalState refuses.
func MarshalState(s pb.ContainerState) []byte {
	return []byte(StateName(s))
}

// UnmarshalState decodes bytes written by MarshalState. Anything else,
// including the encoding of an invalid state, is an error matching
// ErrUnknownState.
func UnmarshalState(b []byte) (pb.ContainerState, error) {
	s, err := ParseState(string(b))
	if err != nil {
		return stateUnspecified, fmt.Errorf("container: decoding persisted state %q: %w", truncate(string(b)), ErrUnknownState)
	}
	return s, nil
}

// truncate bounds untrusted input quoted in an error message.
func truncate(s string) string {
	const limit = 32
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
