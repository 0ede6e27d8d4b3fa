package simnet

import (
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Simulated time comes from testing/synctest: inside its bubble the time package runs on a fake
// clock that jumps ahead whenever every goroutine of the bubble is blocked, so a 15-minute epoch
// costs only the CPU its events need. synctest only opens a bubble for a *testing.T. Tests pass
// theirs (RunT); the rendermesh binary gets one from testing.MainStart, the entry point that `go
// test` binaries use, with the minimal test dependencies below. MainStart is exempt from the Go 1
// compatibility promise: this file is what to revisit when the toolchain (pinned in go.mod) moves.

// Bubble runs f inside a synctest bubble and returns when f and every goroutine it started have
// ended. Tests replace it (see RunT); the default works once per process, outside tests.
var Bubble = mainStartBubble

var errBubbleUsed = errors.New("simnet: one simulation per process (the bubble comes from testing.MainStart)")

var bubbleOnce sync.Once

func mainStartBubble(f func()) error {
	if testing.Testing() {
		return errors.New("simnet: inside a test, run simulations with RunT")
	}
	err := errBubbleUsed
	bubbleOnce.Do(func() {
		ran := false
		m := testing.MainStart(bubbleDeps{}, []testing.InternalTest{{
			Name: "simnet",
			F: func(t *testing.T) {
				synctest.Test(t, func(*testing.T) { ran = true; f() })
			},
		}}, nil, nil, nil)
		if !flag.Parsed() {
			_ = flag.CommandLine.Parse(nil) // the testing flags keep their defaults
		}
		// testing prints PASS or FAIL on stdout, which carries --json: drop those (a failure also
		// panics with its story on stderr).
		stdout := os.Stdout
		if null, err := os.Open(os.DevNull); err == nil {
			os.Stdout = null
			defer null.Close()
		}
		code := m.Run()
		os.Stdout = stdout
		switch {
		case !ran:
			err = errors.New("simnet: the simulation did not start")
		case code != 0:
			err = errors.New("simnet: the simulation failed (see the messages above)")
		default:
			err = nil
		}
	})
	return err
}

// RunT runs a simulation inside a synctest bubble of t.
func RunT(t *testing.T, cfg Config) (*Result, error) {
	var res *Result
	var err error
	began := time.Now()
	defer deterministic(cfg)()
	defer shareChecks()()
	defer cfg.profiler()()
	synctest.Test(t, func(*testing.T) { res, err = run(cfg) })
	if res != nil {
		res.setWall(time.Since(began))
	}
	return res, err
}

// bubbleDeps is the least testing.MainStart needs: no fuzzing, no coverage, no profiles.
type bubbleDeps struct{}

func (bubbleDeps) ImportPath() string { return "github.com/rendermesh/rendermesh/simnet" }
func (bubbleDeps) ModulePath() string { return "github.com/rendermesh/rendermesh" }
func (bubbleDeps) MatchString(pat, str string) (bool, error) {
	return regexp.MatchString(pat, str)
}
func (bubbleDeps) SetPanicOnExit0(bool)                                     {}
func (bubbleDeps) StartCPUProfile(io.Writer) error                          { return errNotSupported }
func (bubbleDeps) StopCPUProfile()                                          {}
func (bubbleDeps) StartTestLog(io.Writer)                                   {}
func (bubbleDeps) StopTestLog() error                                       { return nil }
func (bubbleDeps) WriteProfileTo(string, io.Writer, int) error              { return errNotSupported }
func (bubbleDeps) ResetCoverage()                                           {}
func (bubbleDeps) SnapshotCoverage()                                        {}
func (bubbleDeps) CheckCorpus([]any, []reflect.Type) error                  { return nil }
func (bubbleDeps) RunFuzzWorker(func(corpusEntry) error) error              { return errNotSupported }
func (bubbleDeps) ReadCorpus(string, []reflect.Type) ([]corpusEntry, error) { return nil, nil }
func (bubbleDeps) CoordinateFuzzing(time.Duration, int64, time.Duration, int64, int, []corpusEntry, []reflect.Type, string, string) error {
	return errNotSupported
}
func (bubbleDeps) InitRuntimeCoverage() (string, func(string, string) (string, error), func() float64) {
	return "", nil, nil
}

// corpusEntry mirrors testing's (an alias of this struct type there).
type corpusEntry = struct {
	Parent     string
	Path       string
	Data       []byte
	Values     []any
	Generation int
	IsSeed     bool
}

var errNotSupported = errors.New("simnet: not supported")
