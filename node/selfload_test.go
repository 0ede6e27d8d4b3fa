package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/checker"
)

func TestHistQuantile(t *testing.T) {
	buckets := []float64{math.Inf(-1), 0.001, 0.010, 0.100, math.Inf(1)}
	for _, tc := range []struct {
		name   string
		counts []uint64
		q      float64
		want   time.Duration
	}{
		{"nothing counted", []uint64{0, 0, 0, 0}, 0.99, 0},
		{"all fast", []uint64{0, 1000, 0, 0}, 0.99, 10 * time.Millisecond},
		{"one in a hundred slow", []uint64{0, 99, 0, 1}, 0.99, 10 * time.Millisecond},
		{"two in a hundred slow", []uint64{0, 98, 0, 2}, 0.99, 100 * time.Millisecond},
		{"in the open bucket", []uint64{0, 0, 0, 5}, 0.99, 100 * time.Millisecond},
		{"the median", []uint64{0, 10, 20, 10}, 0.5, 100 * time.Millisecond},
	} {
		if got := histQuantile(tc.counts, buckets, tc.q); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Overflow of the last, open bucket.
	if got := histQuantile([]uint64{0, 0, 0, 1}, []float64{0, 1, 2, 3, math.Inf(1)}, 0.99); got != 3*time.Second {
		t.Errorf("open bucket: %v", got)
	}
}

func TestParseCPUPressure(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"linux", "some avg10=0.85 avg60=1.53 avg300=1.16 total=10561885403\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 10561885403 * time.Microsecond, true},
		{"some only (older kernels)", "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n", 42 * time.Microsecond, true},
		{"full line only", "full avg10=0.00 total=7\n", 0, false},
		{"no total", "some avg10=0.85\n", 0, false},
		{"bad total", "some total=-3\n", 0, false},
		{"huge total", "some total=99999999999999999999999\n", 0, false},
		{"empty", "", 0, false},
	} {
		got, ok := parseCPUPressure([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMachineLoadOverloaded(t *testing.T) {
	for _, tc := range []struct {
		l    MachineLoad
		want bool
	}{
		{MachineLoad{SchedP99: time.Millisecond, CPUPressure: -1}, false},
		{MachineLoad{SchedP99: time.Millisecond, CPUPressure: 0.1}, false},
		{MachineLoad{SchedP99: overloadSchedP99, CPUPressure: 0}, true},
		{MachineLoad{SchedP99: 0, CPUPressure: overloadCPUPressure}, true},
	} {
		if got, why := tc.l.Overloaded(); got != tc.want || (got && why == "") {
			t.Errorf("%+v: overloaded %v (%q), want %v", tc.l, got, why, tc.want)
		}
	}
	if over, _ := (SimulatedLoad{}).Since(SimulatedLoad{}.Mark()).Overloaded(); over {
		t.Error("simulated time is overloaded")
	}
}

// The runtime probe reads this process's scheduler and the kernel's pressure file, when there is
// one; a missing or unreadable file leaves the pressure unknown.
func TestRuntimeLoad(t *testing.T) {
	r := NewRuntimeLoad()
	m := r.Mark()
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	l := r.Since(m)
	if l.Span < 0 || l.SchedP99 < 0 || l.CPUPressure < -1 || l.CPUPressure > 1 {
		t.Fatalf("load %+v", l)
	}
	if _, err := os.Stat(r.psiPath); err == nil && !m.psiRead {
		t.Errorf("%s exists but was not read", r.psiPath)
	}
	r.psiPath = filepath.Join(t.TempDir(), "missing")
	if l := r.Since(r.Mark()); l.CPUPressure != -1 {
		t.Errorf("without a pressure file: %v, want -1", l.CPUPressure)
	}
}

// loadScript is a LoadProbe that reports an overloaded machine for the spans it is told to.
type loadScript struct{ overloaded []bool }

func (s *loadScript) Mark() LoadMark { return LoadMark{} }

func (s *loadScript) Since(LoadMark) MachineLoad {
	over := len(s.overloaded) > 0 && s.overloaded[0]
	if len(s.overloaded) > 0 {
		s.overloaded = s.overloaded[1:]
	}
	if over {
		return MachineLoad{SchedP99: time.Second, CPUPressure: -1}
	}
	return MachineLoad{CPUPressure: -1}
}

// A check that fails on timing is run again, up to twice, each time on a fresh nonce, and what is
// attested is the last run: a pass when the failure was the moment's, the failure when it repeats.
// Failures of content or claims are attested at once.
func TestCheckConfirmsTimingFailures(t *testing.T) {
	pass := checker.Result{Verdict: checker.Pass}
	fail := func(c checker.Check) checker.Result {
		return checker.Result{Verdict: checker.Fail, Check: c, Reason: string(c)}
	}
	errBusy := errors.New("busy")
	type step struct {
		res checker.Result
		err error
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  checker.Result
		// runs is how many times the method ran; confirmations how many were confirmations.
		runs, confirmations int
		wantErr             bool
	}{
		{"a pass", []step{{res: pass}}, pass, 1, 0, false},
		{"a content failure stands at once", []step{{res: fail(checker.CheckContent)}}, fail(checker.CheckContent), 1, 0, false},
		{"a telemetry failure stands at once", []step{{res: fail(checker.CheckTelemetryGPUs)}}, fail(checker.CheckTelemetryGPUs), 1, 0, false},
		{"a moment's frame rate", []step{{res: fail(checker.CheckFrameRate)}, {res: pass}}, pass, 2, 1, false},
		{"a stall twice, then a pass", []step{{res: fail(checker.CheckContinuity)}, {res: fail(checker.CheckContinuity)}, {res: pass}}, pass, 3, 2, false},
		{"three timing failures", []step{{res: fail(checker.CheckFrameRate)}, {res: fail(checker.CheckContinuity)}, {res: fail(checker.CheckFrameRate)}}, fail(checker.CheckFrameRate), 3, 2, false},
		{"a timing failure, then content", []step{{res: fail(checker.CheckLatency)}, {res: fail(checker.CheckContent)}}, fail(checker.CheckContent), 2, 1, false},
		{"unanswered three times", []step{{res: fail(CheckUnanswered)}, {res: fail(CheckUnanswered)}, {res: fail(CheckUnanswered)}}, fail(CheckUnanswered), 3, 2, false},
		{"the confirmation refused", []step{{res: fail(checker.CheckFrameRate)}, {err: errBusy}}, fail(checker.CheckFrameRate), 2, 1, false},
		{"inconclusive", []step{{err: errBusy}}, checker.Result{}, 1, 0, true},
	} {
		probe := &loadScript{overloaded: []bool{true, false, true}}
		c := &checkerSvc{log: slog.New(slog.NewTextHandler(io.Discard, nil)), load: probe}
		var nonces [][]byte
		runs := 0
		nonce, res, err := c.confirmed(context.Background(), peer.ID("container"), MethodSimulation, func(n []byte) (checker.Result, error) {
			s := tc.steps[runs]
			runs++
			nonces = append(nonces, n)
			return s.res, s.err
		})
		if (err != nil) != tc.wantErr || res.Verdict != tc.want.Verdict || res.Check != tc.want.Check {
			t.Errorf("%s: %v %q, %v; want %v %q", tc.name, res.Verdict, res.Check, err, tc.want.Verdict, tc.want.Check)
		}
		if runs != tc.runs || c.stats.Confirmations != tc.confirmations {
			t.Errorf("%s: %d runs, %d confirmations; want %d, %d", tc.name, runs, c.stats.Confirmations, tc.runs, tc.confirmations)
		}
		if wantOver := min(runs, 3) - min(runs, 3)/2; c.stats.Overloaded != wantOver && !tc.wantErr {
			t.Errorf("%s: %d runs counted overloaded, want %d", tc.name, c.stats.Overloaded, wantOver)
		}
		for i := range nonces {
			for j := range i {
				if string(nonces[i]) == string(nonces[j]) {
					t.Errorf("%s: runs %d and %d had the same nonce", tc.name, j, i)
				}
			}
		}
		if !tc.wantErr {
			// The nonce attested is the one of the run whose result is attested.
			last := len(nonces) - 1
			if tc.steps[last].err != nil {
				last--
			}
			if string(nonce) != string(nonces[last]) {
				t.Errorf("%s: the nonce attested is not the attested run's", tc.name)
			}
		}
	}
	c := &checkerSvc{log: slog.New(slog.NewTextHandler(io.Discard, nil)), load: &loadScript{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.confirmed(ctx, "container", MethodSimulation, func([]byte) (checker.Result, error) {
		return fail(checker.CheckFrameRate), nil
	}); !errors.Is(err, errInconclusive) {
		t.Errorf("a check stopped with the node: %v, want inconclusive", err)
	}
}

// Checks deferred at the same moment (at genesis, many at once) come back spread over the backed-off
// interval, not together; another checker spreads them differently.
func TestDeferredChecksSpread(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	recheck := 30 * time.Second
	spread := func(prf string) []time.Duration {
		c := &checkerSvc{cfg: CheckerConfig{Recheck: Duration(recheck)}, prf: []byte(prf),
			refusals: map[string]int{}, retryAt: map[string]time.Time{}}
		var at []time.Duration
		for i := range 200 {
			id := fmt.Sprintf("container-%d", i)
			c.noteRefused(id, now)
			at = append(at, c.retryAt[id].Sub(now))
		}
		return at
	}
	a, b := spread("checker a"), spread("checker b")
	lo, hi := slices.Min(a), slices.Max(a)
	if lo < recheck || hi >= 2*recheck {
		t.Errorf("first retries between %v and %v, want within [%v, %v)", lo, hi, recheck, 2*recheck)
	}
	// 200 draws from [30 s, 60 s): the extremes are within a few percent of the ends.
	if lo > recheck+3*time.Second || hi < 2*recheck-3*time.Second {
		t.Errorf("first retries between %v and %v: not spread over [%v, %v)", lo, hi, recheck, 2*recheck)
	}
	slices.Sort(a)
	if n := len(slices.Compact(a)); n < 190 {
		t.Errorf("%d distinct retry times of 200", n)
	}
	if slices.Equal(spread("checker a"), spread("checker a")) == false {
		t.Error("one checker's retry times are not a function of its secret")
	}
	if slices.Equal(spread("checker a"), b) {
		t.Error("two checkers draw the same retry times")
	}
}

// A container that refuses checks as busy is checked again later, backed off, and fails
// (unanswered) when it has refused maxBusyRefusals in a row; a check it answers clears the count.
func TestBusyRefusals(t *testing.T) {
	c := &checkerSvc{cfg: CheckerConfig{Recheck: Duration(30 * time.Second)},
		refusals: map[string]int{}, retryAt: map[string]time.Time{}}
	now := time.Unix(1_700_000_000, 0)
	if retryDue(c, "a", now) {
		t.Fatal("a retry due before any refusal")
	}
	for i := 1; i < maxBusyRefusals; i++ {
		n, fail := c.noteRefused("a", now)
		if n != i || fail {
			t.Fatalf("refusal %d: counted %d, fail %v", i, n, fail)
		}
		// Backed off and spread: due between 1 and 2 times the recheck interval doubled for each
		// refusal before.
		base := 30 * time.Second << (i - 1)
		if retryDue(c, "a", now.Add(base-time.Nanosecond)) || !retryDue(c, "a", now.Add(2*base)) {
			t.Fatalf("refusal %d: the retry is not due between %v and %v later", i, base, 2*base)
		}
		now = now.Add(2 * base)
	}
	// A check this checker could not make for its own resource limit is due again, backed off
	// and spread, and does not count.
	for range 3 {
		if n := c.noteOwnLimit("a", now); n != maxBusyRefusals-1 {
			t.Fatalf("own limit: %d refusals in a row, want %d", n, maxBusyRefusals-1)
		}
		base := 30 * time.Second << (maxBusyRefusals - 1)
		if retryDue(c, "a", now.Add(base-time.Nanosecond)) || !retryDue(c, "a", now.Add(2*base)) {
			t.Fatalf("own limit: the retry is not due between %v and %v later", base, 2*base)
		}
		now = now.Add(2 * base)
	}
	if n, fail := c.noteRefused("a", now); n != maxBusyRefusals || !fail {
		t.Fatalf("refusal %d: fail %v", n, fail)
	}
	if retryDue(c, "a", now.Add(time.Hour)) {
		t.Error("a retry still due after the failure")
	}
	if n, fail := c.noteRefused("a", now); n != 1 || fail {
		t.Errorf("after the failure the count starts again: %d, %v", n, fail)
	}
	c.noteRefused("b", now)
	c.noteRefused("b", now)
	c.noteAnswered("b")
	if n, fail := c.noteRefused("b", now); n != 1 || fail {
		t.Errorf("an answered check clears the count: %d, %v", n, fail)
	}
	c.noteAnswered("b")
	if retryDue(c, "b", now.Add(time.Hour)) {
		t.Error("a retry due for a container that answered")
	}
	if !errors.Is(errRefusedBusy, errInconclusive) {
		t.Error("a busy refusal is not inconclusive")
	}
}

// dueCheck: which check of a container the schedule starts now.
func TestDueCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	recheck := 30 * time.Second
	const (
		awaiting = pb.ContainerState_CONTAINER_STATE_AWAITING_CHECK
		recheckS = pb.ContainerState_CONTAINER_STATE_NEEDS_RECHECK
		standby  = pb.ContainerState_CONTAINER_STATE_STANDBY
		busy     = pb.ContainerState_CONTAINER_STATE_BUSY
	)
	type spotAns struct{ due, this bool }
	for name, c := range map[string]struct {
		in   dueInput
		spot spotAns
		want due
	}{
		"awaiting, never checked":            {dueInput{state: awaiting}, spotAns{}, dueRegistration},
		"awaiting, checked 10 s ago":         {dueInput{state: awaiting, checked: true, last: now.Add(-10 * time.Second)}, spotAns{}, dueNothing},
		"awaiting, checked a recheck ago":    {dueInput{state: awaiting, checked: true, last: now.Add(-recheck)}, spotAns{}, dueRegistration},
		"needs recheck, checked long ago":    {dueInput{state: recheckS, checked: true, last: now.Add(-time.Hour)}, spotAns{}, dueRegistration},
		"awaiting, retry pending":            {dueInput{state: awaiting, checked: true, last: now.Add(-time.Hour), retryAt: now.Add(time.Second)}, spotAns{}, dueNothing},
		"awaiting, retry due":                {dueInput{state: awaiting, checked: true, last: now.Add(-time.Second), retryAt: now}, spotAns{}, dueRegistration},
		"standby, retry due, second checker": {dueInput{state: standby, rank: 1, retryAt: now.Add(-time.Second)}, spotAns{}, dueRetry},
		"standby, retry pending, spot due":   {dueInput{state: standby, retryAt: now.Add(time.Second)}, spotAns{true, true}, dueNothing},
		"standby, spot due":                  {dueInput{state: standby}, spotAns{true, true}, dueSpot},
		"standby, spot later":                {dueInput{state: standby}, spotAns{false, true}, dueNothing},
		"standby, no spot this epoch":        {dueInput{state: standby}, spotAns{false, false}, dueNoSpot},
		"standby, spot done":                 {dueInput{state: standby, spotDone: true}, spotAns{true, true}, dueNothing},
		"standby, second checker":            {dueInput{state: standby, rank: 1}, spotAns{true, true}, dueNothing},
		"busy":                               {dueInput{state: busy}, spotAns{true, true}, dueNothing},
	} {
		asked := false
		got := dueCheck(c.in, recheck, now, func() (bool, bool) { asked = true; return c.spot.due, c.spot.this })
		if got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
		if asked && (c.in.state != standby || c.in.rank != 0 || c.in.spotDone) {
			t.Errorf("%s: asked for the spot check's time", name)
		}
	}
}

// retryDue says whether a deferred check of container id is due again at now.
func retryDue(c *checkerSvc, id string, now time.Time) bool {
	t, ok := c.retryAt[id]
	return ok && !now.Before(t)
}
