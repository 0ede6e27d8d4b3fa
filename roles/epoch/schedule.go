// Package epoch runs the network's clock of epochs and the election of each epoch's indexers: the
// epoch schedule, the randomness beacon, the VRF (ECVRF-EDWARDS25519-SHA512-ELL2, RFC 9381), the
// sortition that turns a VRF output and a weight into seats, and the Tracker that verifies indexer
// tickets and keeps the current and next committee. It depends on small interfaces (a stake source,
// a clock), not on libp2p; docs/EPOCHS.md explains the design and its limits.
package epoch

import (
	"errors"
	"fmt"
	"time"
)

// DefaultLength is the length of an epoch on the production network.
const DefaultLength = 15 * time.Minute

// Schedule maps time to epochs: epoch 0 starts at Genesis, each lasts Length. Times before genesis
// belong to epoch 0 (the network has not started; nothing is sealed before Genesis).
type Schedule struct {
	Genesis time.Time
	Length  time.Duration
}

// ErrSchedule is wrapped by Schedule.Validate's errors.
var ErrSchedule = errors.New("epoch: invalid schedule")

// Validate checks the schedule.
func (s Schedule) Validate() error {
	if s.Genesis.IsZero() {
		return fmt.Errorf("%w: genesis time is not set", ErrSchedule)
	}
	if s.Length < time.Second {
		return fmt.Errorf("%w: epoch length %s is shorter than 1s", ErrSchedule, s.Length)
	}
	return nil
}

// Epoch is the epoch t falls in.
func (s Schedule) Epoch(t time.Time) uint64 {
	d := t.Sub(s.Genesis)
	if d < 0 {
		return 0
	}
	return uint64(d / s.Length)
}

// Start is when epoch e begins.
func (s Schedule) Start(e uint64) time.Time {
	return s.Genesis.Add(time.Duration(e) * s.Length)
}

// Until is how long from t until epoch e begins (0 if it has).
func (s Schedule) Until(t time.Time, e uint64) time.Duration {
	return max(0, s.Start(e).Sub(t))
}
