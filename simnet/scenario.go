package simnet

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rendermesh/rendermesh/node"
)

// Duration is node's TOML duration ("90s", "15m"), shared so both files read alike.
type Duration = node.Duration

// Scenario is what happens in a run. Built-in scenarios live in simnet/scenarios/*.toml; a file of
// the same shape can be passed instead of a name. Later capabilities add their roles here.
type Scenario struct {
	Name        string `toml:"name"`
	Description string `toml:"description"`
	// Peers is the default peer count (--peers overrides it).
	Peers int `toml:"peers"`
	// Duration is the measured simulated time (--duration overrides it); Warmup is spent before it
	// with peers joining, spread evenly; Settle follows the warm-up before measuring starts.
	Duration Duration `toml:"duration"`
	Warmup   Duration `toml:"warmup"`
	Settle   Duration `toml:"settle"`
	// Window is the interval of the success and delivery series.
	Window Duration `toml:"window"`

	Bootstrap int `toml:"bootstrap"` // peers everyone joins through
	// ConnHigh is each peer's connection-manager high watermark (trimmed to half of it); bootstrap
	// peers keep up to 1024.
	ConnHigh        int      `toml:"conn_high"`
	ContainerShare  float64  `toml:"container_share"` // share of peers running the container role
	HeartbeatEvery  Duration `toml:"heartbeat_interval"`
	RecordTTL       Duration `toml:"record_ttl"`
	ProvideInterval Duration `toml:"provide_interval"` // the republish interval of capability keys

	Queries   QueryLoad `toml:"queries"`
	Churn     Churn     `toml:"churn"`
	Partition Partition `toml:"partition"`
	Flood     Flood     `toml:"flood"`
	Epochs    Epochs    `toml:"epochs"`
	Consumers Consumers `toml:"consumers"`
	Checkers  Checkers  `toml:"checkers"`
	Topology  *Topology `toml:"topology"` // DefaultTopology, with the keys a file gives replaced
}

// Checkers: a share of the peers that are not containers run the checker role with a checker
// licence (in the allocation, with or without stake), and a share of the containers cheat their
// checks. Checks use the telemetry method only (docs/SIMNET.md says why). With checkers,
// containers wait for their registration check before they can be scheduled.
type Checkers struct {
	Share    float64 `toml:"share"`    // share of all peers running the checker role (0: none)
	Cheaters float64 `toml:"cheaters"` // share of containers that cheat: gpu, replay, silent in turn
	// PerContainer, RandomEvery and Recheck are node.CheckerConfig's.
	PerContainer int      `toml:"per_container"`
	RandomEvery  int      `toml:"random_every"`
	Recheck      Duration `toml:"recheck"`
	// CaughtWithin: a cheater counts as caught when a failing attestation about it was issued
	// within this long of the start of epoch 0, when checks begin (0: one epoch length).
	CaughtWithin Duration `toml:"caught_within"`
}

// caughtWithin is CaughtWithin with its default.
func (c Checkers) caughtWithin(sc *Scenario) time.Duration {
	if c.CaughtWithin > 0 {
		return time.Duration(c.CaughtWithin)
	}
	return time.Duration(sc.Epochs.Length)
}

func (c Checkers) validate() error {
	switch {
	case c.Share < 0 || c.Share >= 1:
		return fmt.Errorf("share %v: want [0, 1)", c.Share)
	case c.Cheaters < 0 || c.Cheaters > 0.5:
		return fmt.Errorf("cheaters %v: want [0, 0.5]", c.Cheaters)
	case c.Cheaters > 0 && c.Share == 0:
		return errors.New("cheaters need checkers: set share above 0")
	case c.Share == 0:
		return nil
	case c.PerContainer < 1 || c.PerContainer > 16:
		return fmt.Errorf("per_container %d: want 1 to 16", c.PerContainer)
	case c.RandomEvery < 1:
		return fmt.Errorf("random_every %d: want at least 1", c.RandomEvery)
	case c.Recheck < Duration(time.Second):
		return fmt.Errorf("recheck %v: want at least 1s", time.Duration(c.Recheck))
	case c.CaughtWithin < 0:
		return fmt.Errorf("caught_within %v: want not negative (0: one epoch length)", time.Duration(c.CaughtWithin))
	}
	return nil
}

// Epochs are the indexer elections: every honest peer follows them; a share of peers hold stake and
// are candidates. Epoch 0 starts when the warm-up ends.
type Epochs struct {
	Length        Duration `toml:"length"`
	CommitteeSize uint32   `toml:"committee_size"`
	RecencyWindow uint32   `toml:"recency_window"`
	StakeShare    float64  `toml:"stake_share"` // share of peers with stake (1000-2500 tokens each)
	// AgreementAfter is the stated time: indexer_agreement is the share of online peers that hold
	// the epoch's committee this long after the epoch starts (worst epoch).
	AgreementAfter Duration `toml:"agreement_after"`
}

// QueryLoad is the capability queries consumers issue from random online peers.
type QueryLoad struct {
	Rate    float64  `toml:"rate"`    // per simulated second, over the whole network
	Limit   int      `toml:"limit"`   // providers fetched per query
	Timeout Duration `toml:"timeout"` // a query that takes longer fails
	// Quorum is how many peers' answers a record fetch waits for (0: a complete DHT lookup).
	Quorum int `toml:"quorum"`
}

// Churn: a share of peers leave (crash: their links go dead, then they stop) and as many fresh peers
// join in each epoch, at times spread over it.
type Churn struct {
	Share float64  `toml:"share"`
	Epoch Duration `toml:"epoch"`
}

// Partition cuts groups of regions apart from the rest for a while, then heals.
type Partition struct {
	At     Duration   `toml:"at"`  // after measuring starts
	For    Duration   `toml:"for"` // how long the cut lasts
	Groups [][]string `toml:"groups"`
}

// Flood: a share of extra peers that gossip malformed, forged, replayed and oversize heartbeats and
// indexer tickets, and put forged records into the DHT.
type Flood struct {
	Share float64  `toml:"share"`
	Start Duration `toml:"start"` // after measuring starts
	Rate  float64  `toml:"rate"`  // messages per attacker per simulated second
	Kinds []string `toml:"kinds"`
}

// FloodKinds are the attacks a flood can mix.
var FloodKinds = []string{"malformed", "forged", "replayed", "oversize", "signed", "bad_record", "ticket", "attestation"}

//go:embed scenarios/*.toml
var builtin embed.FS

// Scenarios returns the built-in scenarios, sorted by name.
func Scenarios() ([]Scenario, error) {
	entries, err := fs.ReadDir(builtin, "scenarios")
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for _, e := range entries {
		b, err := builtin.ReadFile(path.Join("scenarios", e.Name()))
		if err != nil {
			return nil, err
		}
		s, err := ParseScenario(b)
		if err != nil {
			return nil, fmt.Errorf("built-in scenario %s: %w", e.Name(), err)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Scenario) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ErrScenario is wrapped by errors about a scenario.
var ErrScenario = errors.New("simnet: bad scenario")

// LoadScenario returns the built-in scenario called nameOrPath, or parses the file at that path.
func LoadScenario(nameOrPath string) (Scenario, error) {
	all, err := Scenarios()
	if err != nil {
		return Scenario{}, err
	}
	for _, s := range all {
		if s.Name == nameOrPath {
			return s, nil
		}
	}
	b, err := os.ReadFile(nameOrPath)
	if err != nil {
		names := make([]string, len(all))
		for i, s := range all {
			names[i] = s.Name
		}
		if errors.Is(err, fs.ErrNotExist) {
			return Scenario{}, fmt.Errorf("%w: %q is neither a built-in scenario (%s) nor a file", ErrScenario, nameOrPath, strings.Join(names, ", "))
		}
		return Scenario{}, fmt.Errorf("%w: %v", ErrScenario, err)
	}
	s, err := ParseScenario(b)
	if err != nil {
		return Scenario{}, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	return s, nil
}

// ParseScenario decodes a scenario file, fills defaults and validates it. Unknown keys are errors.
func ParseScenario(b []byte) (Scenario, error) {
	s := Scenario{
		Peers: 100, Duration: Duration(15 * time.Minute), Warmup: Duration(2 * time.Minute),
		Settle: Duration(30 * time.Second), Window: Duration(30 * time.Second),
		Bootstrap: 4, ConnHigh: 64, ContainerShare: 2.0 / 3, HeartbeatEvery: Duration(30 * time.Second),
		RecordTTL: Duration(time.Hour), ProvideInterval: Duration(10 * time.Minute),
		Queries: QueryLoad{Rate: 0.5, Limit: 20, Timeout: Duration(10 * time.Second), Quorum: 2},
		Epochs: Epochs{Length: Duration(15 * time.Minute), CommitteeSize: 16, RecencyWindow: 4, StakeShare: 1,
			AgreementAfter: Duration(10 * time.Second)},
		Consumers: Consumers{Hold: Duration(30 * time.Second), App: "demo", Rankings: slices.Clone(Rankings),
			Timeout: Duration(10 * time.Second)},
		Checkers: Checkers{PerContainer: 2, RandomEvery: 1, Recheck: Duration(30 * time.Second)},
	}
	// A [topology] table overrides the keys it names: the rest keep DefaultTopology's values.
	topo := DefaultTopology()
	s.Topology = &topo
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&s)
	if err != nil {
		return s, fmt.Errorf("%w: %v", ErrScenario, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = k.String()
		}
		return s, fmt.Errorf("%w: unknown keys %s", ErrScenario, strings.Join(keys, ", "))
	}
	if len(s.Consumers.Rankings) == 0 {
		s.Consumers.Rankings = slices.Clone(Rankings)
	}
	return s, s.Validate()
}

// Validate checks a scenario's figures.
func (s *Scenario) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrScenario}, a...)...)
	}
	switch {
	case s.Name == "":
		return bad("no name")
	case s.Peers < 2:
		return bad("peers %d: want at least 2", s.Peers)
	case s.Duration <= 0 || s.Warmup < 0 || s.Settle < 0:
		return bad("duration must be positive, warmup and settle not negative")
	case s.Window <= 0:
		return bad("window must be positive")
	case s.Bootstrap < 1:
		return bad("bootstrap %d: want at least 1", s.Bootstrap)
	case s.ConnHigh < 8:
		return bad("conn_high %d: want at least 8", s.ConnHigh)
	case s.ContainerShare < 0 || s.ContainerShare > 1:
		return bad("container_share %v: want [0, 1]", s.ContainerShare)
	case s.HeartbeatEvery < Duration(time.Second):
		return bad("heartbeat_interval %v: want at least 1s", time.Duration(s.HeartbeatEvery))
	case s.RecordTTL < Duration(time.Minute) || s.ProvideInterval < Duration(time.Minute):
		return bad("record_ttl and provide_interval: want at least 1m")
	case s.Queries.Rate < 0 || s.Queries.Limit < 0 || s.Queries.Quorum < 0 || s.Queries.Timeout <= 0:
		return bad("queries: rate, limit and quorum not negative, timeout positive")
	case s.Churn.Share < 0 || s.Churn.Share > 0.5:
		return bad("churn share %v: want [0, 0.5]", s.Churn.Share)
	case s.Churn.Share > 0 && s.Churn.Epoch <= 0:
		return bad("churn needs an epoch")
	case s.Flood.Share < 0 || s.Flood.Share > 0.5 || s.Flood.Rate < 0:
		return bad("flood: share [0, 0.5], rate not negative")
	case s.Epochs.Length < Duration(time.Second) || s.Epochs.CommitteeSize < 1 || s.Epochs.AgreementAfter < 0:
		return bad("epochs: length at least 1s, committee_size at least 1, agreement_after not negative")
	case s.Epochs.StakeShare < 0 || s.Epochs.StakeShare > 1:
		return bad("epochs: stake_share %v: want [0, 1]", s.Epochs.StakeShare)
	}
	if err := s.Topology.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrScenario, err)
	}
	if err := s.Consumers.validate(); err != nil {
		return fmt.Errorf("%w: consumers: %v", ErrScenario, err)
	}
	if err := s.Checkers.validate(); err != nil {
		return fmt.Errorf("%w: checkers: %v", ErrScenario, err)
	}
	if s.Checkers.Cheaters > 0 && s.ContainerShare == 0 {
		return bad("checkers: cheaters need containers: container_share is 0")
	}
	for _, g := range s.Partition.Groups {
		for _, r := range g {
			if !slices.ContainsFunc(s.Topology.Regions, func(x Region) bool { return x.Name == r }) {
				return bad("partition names region %q, not in the topology", r)
			}
		}
	}
	if len(s.Partition.Groups) > 0 && s.Partition.For <= 0 {
		return bad("partition needs a positive duration (for)")
	}
	for _, k := range s.Flood.Kinds {
		if !slices.Contains(FloodKinds, k) {
			return bad("flood kind %q: want one of %s", k, strings.Join(FloodKinds, ", "))
		}
	}
	if s.Flood.Share > 0 && len(s.Flood.Kinds) == 0 {
		s.Flood.Kinds = FloodKinds
	}
	return nil
}
