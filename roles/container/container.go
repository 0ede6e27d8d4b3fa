package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Network is what a container needs from the network.
type Network interface {
	// PutRecord signs and stores the container's capability record.
	PutRecord(ctx context.Context, rec *pb.ContainerRecord) error
	// Provide announces the container under a capability key such as "gpu:H100".
	Provide(ctx context.Context, key string) error
	// PublishHeartbeat signs and gossips a heartbeat on its region's topic.
	PublishHeartbeat(ctx context.Context, hb *pb.Heartbeat) error
}

// Store keeps the container's durable state. Put returns once the value is on disk.
type Store interface {
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	Put(ctx context.Context, key string, value []byte) error
}

// Store keys.
const (
	keyState = "container/state"
	keySeq   = "container/record-seq"
)

// Defaults of Config.
const (
	DefaultRecordTTL         = time.Hour
	DefaultProvideInterval   = 6 * time.Hour
	DefaultHeartbeatInterval = 5 * time.Second
)

// CPUModel is the model under which CPU-only containers (software rendering) are advertised.
const CPUModel = "none"

// Config configures a container.
type Config struct {
	PeerID  []byte          // the node's peer ID, raw bytes
	Addrs   func() [][]byte // the node's current multiaddrs, binary
	Probe   Probe           // hardware
	Region  string          // region code
	Geohash string          // location
	LatLon  *[2]int32       // optional coordinates, degrees * 1e6
	Apps    []string        // pre-installed applications
	Fee     uint64          // ask per session, micro-units (at most MaxFee); SetFee changes it
	Version string          // agent version in records

	RecordTTL         time.Duration // record lifetime; republished at half of it
	ProvideInterval   time.Duration // provider records republished this often
	HeartbeatInterval time.Duration
	// AutoCheck passes the registration check without a checker. Only devnet sets it.
	AutoCheck bool

	Clock  clock.Clock
	Logger *slog.Logger
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("container: bad configuration")

func (c *Config) validate() error {
	switch {
	case len(c.PeerID) == 0:
		return fmt.Errorf("%w: no peer ID", ErrConfig)
	case c.Probe == nil:
		return fmt.Errorf("%w: no hardware probe", ErrConfig)
	case !ValidRegion(c.Region):
		return fmt.Errorf("%w: region %q: want 2-32 characters of a-z, 0-9 and '-', starting with a letter (e.g. eu-west)", ErrConfig, c.Region)
	case !ValidGeohash(c.Geohash) || len(c.Geohash) < PrefixPrecisions[0]:
		return fmt.Errorf("%w: geohash %q: want 2-12 base32 geohash characters (e.g. u33dc0), or set latitude and longitude", ErrConfig, c.Geohash)
	case c.Fee > MaxFee:
		return fmt.Errorf("%w: session fee %d micro-units is above the limit %d", ErrConfig, c.Fee, uint64(MaxFee))
	case len(c.Apps) == 0:
		return fmt.Errorf("%w: no applications: list at least one pre-installed app (e.g. apps = [\"demo\"])", ErrConfig)
	}
	for _, app := range c.Apps {
		if !validApp(app) {
			return fmt.Errorf("%w: app name %q: want 1-48 characters of a-z, 0-9, '-', '_' and '.'", ErrConfig, app)
		}
	}
	if c.RecordTTL == 0 {
		c.RecordTTL = DefaultRecordTTL
	}
	if c.ProvideInterval == 0 {
		c.ProvideInterval = DefaultProvideInterval
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RecordTTL < 2*time.Second || c.HeartbeatInterval <= 0 || c.ProvideInterval <= 0 {
		return fmt.Errorf("%w: record TTL, provide and heartbeat intervals must be positive (TTL at least 2s)", ErrConfig)
	}
	if c.Addrs == nil {
		c.Addrs = func() [][]byte { return nil }
	}
	if c.Clock == nil {
		c.Clock = clock.New()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func validApp(s string) bool {
	if len(s) == 0 || len(s) > 48 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Container is a running container role: it keeps its lifecycle durable and advertises itself.
type Container struct {
	cfg   Config
	net   Network
	store Store
	log   *slog.Logger
	life  *Lifecycle
	hw    *pb.Hardware

	mu        sync.Mutex
	recordSeq uint64    // last published record's sequence number
	published time.Time // when the last record was published
	pubSeq    uint64    // and its sequence number
	hbCount   uint64    // heartbeats since the last record
	provided  time.Time // last successful provide round

	fee    atomic.Uint64 // the ask in force, micro-units per session
	bookMu sync.Mutex    // guards book; taken before mu, never while holding it
	book   book          // leases, the live session and the wholesale calendar (book.go)

	kick   chan struct{} // republish the record and send a heartbeat now
	beat   chan struct{} // send a heartbeat now (the book changed)
	cancel context.CancelFunc
	done   chan struct{}
}

// New restores the container's state from store (configuring when new) and reads its hardware.
func New(cfg Config, net Network, store Store) (*Container, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	hw, err := cfg.Probe.Hardware()
	if err != nil {
		return nil, fmt.Errorf("container: read hardware: %w", err)
	}
	c := &Container{cfg: cfg, net: net, store: store, log: cfg.Logger, hw: hw,
		kick: make(chan struct{}, 1), beat: make(chan struct{}, 1)}
	c.fee.Store(cfg.Fee)
	ctx := context.Background()
	state := stateConfiguring
	if b, ok, err := store.Get(ctx, keyState); err != nil {
		return nil, fmt.Errorf("container: load state: %w", err)
	} else if ok {
		if state, err = UnmarshalState(b); err != nil {
			return nil, fmt.Errorf("container: load state: %w", err)
		}
	}
	if b, ok, err := store.Get(ctx, keySeq); err != nil {
		return nil, fmt.Errorf("container: load record sequence: %w", err)
	} else if ok {
		if c.recordSeq, err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return nil, fmt.Errorf("container: load record sequence %q: %w", b, err)
		}
	}
	if err := c.loadBook(ctx); err != nil {
		return nil, err
	}
	c.life = NewLifecycle(state)
	return c, nil
}

// Hardware is what the probe read at start.
func (c *Container) Hardware() *pb.Hardware { return c.hw }

// State is the current lifecycle state.
func (c *Container) State() pb.ContainerState { return c.life.State() }

// RecordSeq is the sequence number of the last record this container published.
func (c *Container) RecordSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recordSeq
}

// CapabilityKeys are the keys the container provides: its GPU models (CPUModel without GPU), the
// prefixes of its geohash, and its apps.
func (c *Container) CapabilityKeys() []string {
	var keys []string
	models := GPUModels(c.hw)
	for _, m := range models {
		keys = append(keys, "gpu:"+m)
	}
	for _, p := range RegionPrefixes(c.cfg.Geohash) {
		keys = append(keys, "region:"+p)
	}
	for _, a := range c.cfg.Apps {
		keys = append(keys, "app:"+a)
	}
	return keys
}

// GPUModels lists the distinct GPU models of hw, sorted; CPUModel when it has none.
func GPUModels(hw *pb.Hardware) []string {
	var models []string
	for _, g := range hw.GetGpus() {
		if !slices.Contains(models, g.Model) {
			models = append(models, g.Model)
		}
	}
	if len(models) == 0 {
		return []string{CPUModel}
	}
	slices.Sort(models)
	return models
}

// Start resumes the lifecycle (a restart ends any session; a new container finishes configuring and
// awaits its registration check), publishes the record and provider records once, and starts the
// republish and heartbeat loops. It fails if the first record cannot be published.
func (c *Container) Start(ctx context.Context) error {
	switch c.life.State() {
	case stateConfiguring:
		c.apply(ctx, EvConfigured)
	default:
		c.apply(ctx, EvRestarted)
	}
	c.restartBook(ctx)
	if c.cfg.AutoCheck {
		if s := c.life.State(); s == stateAwaitingCheck || s == stateNeedsRecheck {
			c.log.Warn("dev autocheck: passing the registration check without a checker (devnet only)")
			c.apply(ctx, EvCheckPassed)
		}
	}
	if c.life.State() == stateAwaitingCheck {
		c.log.Info("container registered; awaiting its registration check by a checker before it is scheduled",
			"state", StateName(stateAwaitingCheck))
	}
	if err := c.publishRecord(ctx); err != nil {
		// Alone on the network, or its peers unreachable: the loop retries at every heartbeat.
		c.log.Warn("first record publication failed; retrying at every heartbeat", "err", err)
	}
	c.provideAll(ctx)
	c.sendHeartbeat(ctx)

	loopCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	go c.loop(loopCtx)
	return nil
}

// Stop ends the loops. The record stays in the DHT until it expires.
func (c *Container) Stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
}

// Lock takes the container out of scheduling for maintenance. It is refused while a session is
// live (ErrBusy); a retail lease that holds the container for a consumer on its way is dropped.
func (c *Container) Lock(ctx context.Context) (pb.ContainerState, error) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	s, err := c.operator(ctx, EvLock)
	if err == nil && c.book.lease != nil {
		c.log.Info("lock dropped a lease", "session", hexID(c.book.lease.id))
		c.book.lease = nil
	}
	return s, err
}

// Unlock ends maintenance; the container must be checked again before it is scheduled.
func (c *Container) Unlock(ctx context.Context) (pb.ContainerState, error) {
	s, err := c.operator(ctx, EvUnlock)
	if err == nil && c.cfg.AutoCheck {
		s, err = c.operator(ctx, EvCheckPassed)
	}
	return s, err
}

// Checked applies the network's verdict on this container: its standing in the checkers'
// attestation ledger. A pass moves awaiting_check or needs_recheck to standby; a failure moves it
// to needs_recheck, out of scheduling until a check passes. A verdict that changes nothing (a pass
// in standby or busy, a failure in needs_recheck) is not an error.
func (c *Container) Checked(ctx context.Context, passed bool) (pb.ContainerState, error) {
	s := c.life.State()
	switch {
	case passed && (s == stateStandby || s == stateBusy), !passed && s == stateNeedsRecheck:
		return s, nil
	case passed:
		return c.operator(ctx, EvCheckPassed)
	default:
		return c.operator(ctx, EvCheckFailed)
	}
}

func (c *Container) operator(ctx context.Context, ev Event) (pb.ContainerState, error) {
	s, err := c.life.Apply(ev)
	if err != nil {
		return s, err
	}
	if err := c.store.Put(ctx, keyState, MarshalState(s)); err != nil {
		return s, fmt.Errorf("container: persist state %s: %w", StateName(s), err)
	}
	c.log.Info("state changed", "event", ev.String(), "state", StateName(s))
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return s, nil
}

// apply moves the lifecycle at start-up; these transitions are allowed from every state they are
// used in, so a refusal is logged and ignored.
func (c *Container) apply(ctx context.Context, ev Event) {
	if _, err := c.operator(ctx, ev); err != nil {
		c.log.Debug("lifecycle", "event", ev.String(), "err", err)
	}
}

func (c *Container) loop(ctx context.Context) {
	defer close(c.done)
	republish := c.cfg.Clock.Ticker(c.cfg.RecordTTL / 2)
	defer republish.Stop()
	provide := c.cfg.Clock.Ticker(c.cfg.ProvideInterval)
	defer provide.Stop()
	heartbeat := c.cfg.Clock.Ticker(c.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	// wake fires when a lease lapses, a session or a booked block ends.
	wake := c.cfg.Clock.Timer(time.Hour)
	defer wake.Stop()
	for {
		if d, ok := c.nextDeadline(); ok {
			wake.Reset(d)
		} else {
			wake.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-republish.C:
			if err := c.publishRecord(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("republish record failed; retrying at the next heartbeat", "err", err)
			}
		case <-provide.C:
			c.provideAll(ctx)
		case <-heartbeat.C:
			// Catch up on what failed before (no peers yet, or the clock jumped).
			c.mu.Lock()
			recordDue := c.cfg.Clock.Since(c.published) >= c.cfg.RecordTTL/2
			provideDue := c.cfg.Clock.Since(c.provided) >= c.cfg.ProvideInterval
			c.mu.Unlock()
			if recordDue {
				if err := c.publishRecord(ctx); err != nil && ctx.Err() == nil {
					c.log.Debug("republish record failed", "err", err)
				}
			}
			if provideDue {
				c.provideAll(ctx)
			}
			c.settle(ctx)
			c.sendHeartbeat(ctx)
		case <-wake.C:
			c.settle(ctx)
			c.sendHeartbeat(ctx)
		case <-c.beat:
			c.sendHeartbeat(ctx)
		case <-c.kick:
			if err := c.publishRecord(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("publish record failed", "err", err)
			}
			c.sendHeartbeat(ctx)
		}
	}
}

// Record builds the capability record with the given sequence number.
func (c *Container) Record(seq uint64) *pb.ContainerRecord {
	now := c.cfg.Clock.Now()
	rec := &pb.ContainerRecord{
		PeerId:           c.cfg.PeerID,
		Seq:              seq,
		IssuedUnixMs:     now.UnixMilli(),
		ExpiresUnixMs:    now.Add(c.cfg.RecordTTL).UnixMilli(),
		Hardware:         c.hw,
		Location:         &pb.Location{Region: c.cfg.Region, Geohash: c.cfg.Geohash},
		Apps:             c.cfg.Apps,
		SessionFeeMicros: c.fee.Load(),
		Addrs:            c.cfg.Addrs(),
		State:            c.life.State(),
		AgentVersion:     c.cfg.Version,
	}
	if ll := c.cfg.LatLon; ll != nil {
		rec.Location.HasCoordinates = true
		rec.Location.LatitudeE6, rec.Location.LongitudeE6 = ll[0], ll[1]
	}
	return rec
}

// publishRecord stores the next sequence number durably, then publishes the record with it, so a
// restart never reuses a sequence number.
func (c *Container) publishRecord(ctx context.Context) error {
	c.mu.Lock()
	seq := c.recordSeq + 1
	c.mu.Unlock()
	if err := c.store.Put(ctx, keySeq, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("container: persist record sequence: %w", err)
	}
	c.mu.Lock()
	c.recordSeq, c.hbCount = seq, 0
	c.mu.Unlock()
	if err := c.net.PutRecord(ctx, c.Record(seq)); err != nil {
		return fmt.Errorf("container: publish record %d: %w", seq, err)
	}
	c.mu.Lock()
	c.published, c.pubSeq = c.cfg.Clock.Now(), seq
	c.mu.Unlock()
	c.log.Debug("record published", "seq", seq)
	return nil
}

func (c *Container) provideAll(ctx context.Context) {
	keys := c.CapabilityKeys()
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Go(func() { errs[i] = c.net.Provide(ctx, key) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("provide failed; retrying at the next heartbeat", "err", err)
		}
	} else {
		c.mu.Lock()
		c.provided = c.cfg.Clock.Now()
		c.mu.Unlock()
	}
}

func (c *Container) sendHeartbeat(ctx context.Context) {
	tel, err := c.cfg.Probe.Telemetry()
	if err != nil {
		c.log.Warn("read telemetry", "err", err)
	}
	var load uint32
	for _, t := range tel {
		load += t.UtilizationPct * 10
	}
	if len(tel) > 0 {
		load /= uint32(len(tel))
	}
	hb := &pb.Heartbeat{}
	c.heartbeatBook(hb) // under bookMu, before mu
	c.mu.Lock()
	c.hbCount++
	hb.PeerId = c.cfg.PeerID
	hb.Seq = c.recordSeq<<32 | c.hbCount // grows across restarts: every start publishes a new record
	hb.SentUnixMs = c.cfg.Clock.Now().UnixMilli()
	hb.Region = c.cfg.Region
	hb.State = c.life.State()
	hb.LoadPermille = min(load, 1000)
	hb.Gpus = tel
	hb.RecordSeq = c.recordSeq
	c.mu.Unlock()
	if err := c.net.PublishHeartbeat(ctx, hb); err != nil && ctx.Err() == nil {
		c.log.Debug("publish heartbeat", "err", err)
	}
}

// Status is a snapshot for operators.
type Status struct {
	State       string    `json:"state"`
	Group       Group     `json:"group"`
	RecordSeq   uint64    `json:"record_seq"`    // last sequence number issued
	Published   uint64    `json:"published_seq"` // last sequence number stored in the DHT
	PublishedAt time.Time `json:"record_published"`
	Provided    time.Time `json:"provided"`
	Keys        []string  `json:"capability_keys"`
	Simulated   bool      `json:"simulated_hardware"`
	GPUs        []string  `json:"gpus"`
	FeeMicros   uint64    `json:"session_fee_micros"` // the ask in force, per 15-minute session
	Sessions    int       `json:"sessions"`           // live sessions (0 or 1)
	Bookings    int       `json:"bookings"`           // wholesale blocks ahead
}

// Status reports the container's state and advertisement.
func (c *Container) Status() Status {
	sessions, bookings := len(c.Sessions()), len(c.Bookings()) // the book's lock first, then c.mu
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.life.State()
	st := Status{State: StateName(s), Group: GroupOf(s), RecordSeq: c.recordSeq, Published: c.pubSeq, PublishedAt: c.published,
		Provided: c.provided, Keys: c.CapabilityKeys(), Simulated: c.hw.GetSimulated(),
		FeeMicros: c.Fee(), Sessions: sessions, Bookings: bookings}
	for _, g := range c.hw.GetGpus() {
		st.GPUs = append(st.GPUs, g.Name)
	}
	return st
}
