package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// The reservation book is the container's own guarantee that it is never booked twice, however many
// indexers race for it. It holds at most one retail lease (a hold for a consumer on its way), at
// most one live session, and the wholesale calendar (blocks sold ahead). Every change happens under
// Container.bookMu, so of any set of concurrent reservations for overlapping time exactly one wins.
//
// A retail reservation holds the window [now, lease end + units*UnitLength): whenever the consumer
// arrives before its lease lapses, its whole session fits before the next booked block. A wholesale
// reservation is a booking [start, start + units*UnitLength), durable before it is granted.

// UnitLength is the length of one session unit: sessions are sold in 15-minute units.
const UnitLength = 15 * time.Minute

// Limits of the reservation book.
const (
	MaxUnits             = 96                    // units in one reservation or renewal (a day)
	MaxLease             = time.Minute           // the longest a retail lease may hold the container
	ArriveEarly          = time.Minute           // a wholesale consumer may arrive this long before its block
	BookingHorizon       = 90 * 24 * time.Hour   // how far ahead a block may start
	MaxBookings          = 1024                  // blocks in the calendar
	MaxHeartbeatBookings = 32                    // blocks a heartbeat carries, the earliest first
	MaxFee               = 1_000_000_000_000_000 // largest ask, micro-units per unit (receipt arithmetic stays exact)
)

// Reasons a ReserveResponse gives for a refusal.
const (
	RefusedBadRequest = "bad_request"
	RefusedApp        = "app"
	RefusedPrice      = "price"
	RefusedNotStandby = "not_standby"
	RefusedReserved   = "reserved"
	RefusedCalendar   = "calendar"
)

// Store keys of the book.
const (
	keyBookings = "container/bookings"
	keySessions = "container/sessions"
)

var (
	// ErrNoReservation: no lease or booking holds this session (never made, dropped, or used).
	ErrNoReservation = errors.New("container: no reservation for this session")
	// ErrTicketMismatch: the ticket differs from the reservation the container made.
	ErrTicketMismatch = errors.New("container: ticket does not match the reservation")
	// ErrLeaseLapsed: the consumer arrived after its lease lapsed or its block ended.
	ErrLeaseLapsed = errors.New("container: reservation lapsed")
	// ErrTooEarly: a wholesale consumer arrived more than ArriveEarly before its block.
	ErrTooEarly = errors.New("container: booked block has not started")
	// ErrCalendar: a renewal would run into a booked block.
	ErrCalendar = errors.New("container: calendar conflict")
	// ErrNoSession: no live session has this ID.
	ErrNoSession = errors.New("container: no such live session")
	// ErrBadRequest: a request outside the limits (units, fee).
	ErrBadRequest = errors.New("container: bad request")
)

// Session is a consumer's live session on this container.
type Session struct {
	ID                []byte
	Consumer, Indexer string // peer IDs, raw bytes
	Price             uint64 // micro-units per unit
	Start, End        time.Time
	Mode              pb.ServiceMode // RETAIL or WHOLESALE
	Epoch             uint64
}

// Booking is one sold block of the wholesale calendar, [Start, End).
type Booking struct {
	ID                []byte
	Consumer, Indexer string
	App               string
	Price             uint64
	Units             uint32
	Epoch             uint64
	Start, End        time.Time
	Arrived           bool // its consumer has arrived: it admits no second arrival
}

// lease is a retail hold for a consumer on its way.
type lease struct {
	id       []byte
	indexer  string
	consumer []byte
	app      string
	epoch    uint64
	price    uint64
	units    uint32
	granted  time.Time
	expires  time.Time
}

// window is the time a lease may occupy: until its session ends if the consumer arrives last minute.
func (l *lease) window() (time.Time, time.Time) {
	return l.granted, l.expires.Add(time.Duration(l.units) * UnitLength)
}

// book is the reservation book. Guarded by Container.bookMu.
type book struct {
	lease       *lease
	session     *Session
	bookings    []*Booking // sorted by Start; never overlapping
	lapsed      [32][]byte // IDs of recently lapsed leases, for a precise error on late arrival
	lapsedNext  int
	interrupted []Session // sessions a restart cut off (loaded from the store)
}

func (b *book) rememberLapsed(id []byte) {
	b.lapsed[b.lapsedNext] = id
	b.lapsedNext = (b.lapsedNext + 1) % len(b.lapsed)
}

func (b *book) wasLapsed(id []byte) bool {
	for _, l := range b.lapsed {
		if l != nil && bytes.Equal(l, id) {
			return true
		}
	}
	return false
}

func (b *book) findBooking(id []byte) *Booking {
	for _, bk := range b.bookings {
		if bytes.Equal(bk.ID, id) {
			return bk
		}
	}
	return nil
}

// overlaps reports whether [start, end) meets a booking other than skip.
func (b *book) overlaps(start, end time.Time, skip *Booking) bool {
	for _, bk := range b.bookings {
		if bk != skip && start.Before(bk.End) && bk.Start.Before(end) {
			return true
		}
	}
	return false
}

func (b *book) insert(bk *Booking) {
	i, _ := slices.BinarySearchFunc(b.bookings, bk.Start, func(e *Booking, t time.Time) int { return e.Start.Compare(t) })
	b.bookings = slices.Insert(b.bookings, i, bk)
}

func (b *book) remove(bk *Booking) {
	b.bookings = slices.DeleteFunc(b.bookings, func(e *Booking) bool { return e == bk })
}

// reservedUntil is when the live lease or session lets go of the container (zero: free).
func (b *book) reservedUntil() time.Time {
	var t time.Time
	if b.lease != nil {
		t = b.lease.expires
	}
	if b.session != nil && b.session.End.After(t) {
		t = b.session.End
	}
	return t
}

func retailMode(m pb.ServiceMode) bool {
	return m == pb.ServiceMode_SERVICE_MODE_UNSPECIFIED || m == pb.ServiceMode_SERVICE_MODE_RETAIL
}

func normMode(m pb.ServiceMode) pb.ServiceMode {
	if m == pb.ServiceMode_SERVICE_MODE_UNSPECIFIED {
		return pb.ServiceMode_SERVICE_MODE_RETAIL
	}
	return m
}

// Reserve handles an indexer's ReserveRequest (indexer is the requesting peer ID, raw bytes as a
// string). It never returns nil: a refusal names its reason (the Refused* constants).
func (c *Container) Reserve(ctx context.Context, indexer string, req *pb.ReserveRequest) *pb.ReserveResponse {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	now := c.cfg.Clock.Now()
	c.settleLocked(ctx, now)
	resp := c.reserveLocked(ctx, now, indexer, req)
	resp.State = c.life.State()
	if resp.Reserved {
		c.log.Debug("reserved", "session", hexID(req.GetSessionId()), "mode", normMode(req.GetMode()).String(),
			"units", req.GetUnits(), "until", time.UnixMilli(resp.LeaseExpiresUnixMs))
		c.beatNow()
	} else {
		c.log.Debug("reservation refused", "refused", resp.Refused, "mode", req.GetMode().String())
	}
	return resp
}

func refuse(reason string) *pb.ReserveResponse { return &pb.ReserveResponse{Refused: reason} }

func (c *Container) reserveLocked(ctx context.Context, now time.Time, indexer string, req *pb.ReserveRequest) *pb.ReserveResponse {
	mode := req.GetMode()
	wholesale := mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE
	switch {
	case len(req.GetSessionId()) != 16, len(req.GetConsumer()) == 0,
		req.GetUnits() == 0, req.GetUnits() > MaxUnits,
		req.GetLeaseMs() == 0, time.Duration(req.GetLeaseMs())*time.Millisecond > MaxLease,
		!retailMode(mode) && !wholesale,
		wholesale && req.GetStartUnixMs() == 0,
		wholesale && req.GetStartUnixMs() > now.Add(BookingHorizon).UnixMilli():
		return refuse(RefusedBadRequest)
	case !slices.Contains(c.cfg.Apps, req.GetApp()):
		return refuse(RefusedApp)
	case req.GetPriceMicros() < c.fee.Load():
		return refuse(RefusedPrice)
	}
	id := req.GetSessionId()
	length := time.Duration(req.GetUnits()) * UnitLength
	state := c.life.State()
	b := &c.book

	if !wholesale {
		if state != stateStandby {
			return refuse(RefusedNotStandby)
		}
		if l := b.lease; l != nil {
			if bytes.Equal(l.id, id) && l.indexer == indexer && bytes.Equal(l.consumer, req.GetConsumer()) &&
				l.app == req.GetApp() && l.price == req.GetPriceMicros() && l.units == req.GetUnits() && l.epoch == req.GetEpoch() {
				return &pb.ReserveResponse{Reserved: true, LeaseExpiresUnixMs: l.expires.UnixMilli()}
			}
			return refuse(RefusedReserved)
		}
		if b.session != nil || b.findBooking(id) != nil {
			return refuse(RefusedReserved)
		}
		l := &lease{id: bytes.Clone(id), indexer: indexer, consumer: bytes.Clone(req.GetConsumer()), app: req.GetApp(),
			epoch: req.GetEpoch(), price: req.GetPriceMicros(), units: req.GetUnits(), granted: now,
			expires: now.Add(time.Duration(req.GetLeaseMs()) * time.Millisecond)}
		if start, end := l.window(); b.overlaps(start, end, nil) {
			return refuse(RefusedCalendar)
		}
		b.lease = l
		return &pb.ReserveResponse{Reserved: true, LeaseExpiresUnixMs: l.expires.UnixMilli()}
	}

	if state != stateStandby && state != stateBusy {
		return refuse(RefusedNotStandby)
	}
	start := time.UnixMilli(req.GetStartUnixMs())
	end := start.Add(length)
	if bk := b.findBooking(id); bk != nil {
		if bk.Indexer == indexer && bk.Consumer == string(req.GetConsumer()) && bk.App == req.GetApp() &&
			bk.Price == req.GetPriceMicros() && bk.Units == req.GetUnits() && bk.Epoch == req.GetEpoch() &&
			bk.Start.Equal(start) && !bk.Arrived {
			return &pb.ReserveResponse{Reserved: true, LeaseExpiresUnixMs: bk.End.UnixMilli()}
		}
		return refuse(RefusedReserved)
	}
	if (b.lease != nil && bytes.Equal(b.lease.id, id)) || (b.session != nil && bytes.Equal(b.session.ID, id)) {
		return refuse(RefusedReserved)
	}
	if start.Before(now) || len(b.bookings) >= MaxBookings || b.overlaps(start, end, nil) {
		return refuse(RefusedCalendar)
	}
	if s := b.session; s != nil && start.Before(s.End) && s.Start.Before(end) {
		return refuse(RefusedCalendar)
	}
	if l := b.lease; l != nil {
		if ls, le := l.window(); start.Before(le) && ls.Before(end) {
			return refuse(RefusedCalendar)
		}
	}
	bk := &Booking{ID: bytes.Clone(id), Consumer: string(req.GetConsumer()), Indexer: indexer, App: req.GetApp(),
		Price: req.GetPriceMicros(), Units: req.GetUnits(), Epoch: req.GetEpoch(), Start: start, End: end}
	b.insert(bk)
	if err := c.saveBookings(ctx); err != nil {
		b.remove(bk)
		c.log.Error("wholesale booking not granted: the calendar could not be stored", "err", err)
		return refuse(RefusedCalendar)
	}
	return &pb.ReserveResponse{Reserved: true, LeaseExpiresUnixMs: end.UnixMilli()}
}

// Arrive admits the consumer that presents ticket (its signature already checked; indexer is the
// ticket's signer). The ticket must match the reservation: session, consumer, indexer, container,
// app, mode, epoch, price and units; a retail lease must not have lapsed, and a wholesale consumer
// must arrive within [start-ArriveEarly, end). The container then moves standby -> busy, durably,
// and the session runs until the returned Session's End.
func (c *Container) Arrive(ctx context.Context, consumer, indexer string, t *pb.SessionTicket) (*Session, error) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	now := c.cfg.Clock.Now()
	c.settleLocked(ctx, now)
	b := &c.book
	id := t.GetSessionId()
	sid := hexID(id)

	mismatch := func(what string) error {
		return fmt.Errorf("%w: session %s: %s", ErrTicketMismatch, sid, what)
	}
	checkTicket := func(rConsumer, rIndexer, app string, mode pb.ServiceMode, epoch, price uint64, units uint32) error {
		switch {
		case string(t.GetConsumer()) != consumer || consumer != rConsumer:
			return mismatch("consumer")
		case string(t.GetIndexer()) != indexer || indexer != rIndexer:
			return mismatch("indexer")
		case !bytes.Equal(t.GetContainer(), c.cfg.PeerID):
			return mismatch("container")
		case t.GetApp() != app:
			return mismatch("app")
		case normMode(t.GetMode()) != mode:
			return mismatch("mode")
		case t.GetEpoch() != epoch:
			return mismatch("epoch")
		case t.GetPriceMicros() != price:
			return mismatch("price")
		case t.GetUnits() != units:
			return mismatch("units")
		}
		return nil
	}

	var s *Session
	var bk *Booking
	switch l := b.lease; {
	case len(id) == 0:
		return nil, fmt.Errorf("%w: ticket without session ID", ErrNoReservation)
	case b.session != nil && bytes.Equal(b.session.ID, id):
		return nil, fmt.Errorf("%w: session %s is already live", ErrNoReservation, sid)
	case b.session != nil:
		return nil, fmt.Errorf("container: admit session %s: %w", sid, ErrBusy)
	case l != nil && bytes.Equal(l.id, id):
		if err := checkTicket(string(l.consumer), l.indexer, l.app, pb.ServiceMode_SERVICE_MODE_RETAIL, l.epoch, l.price, l.units); err != nil {
			return nil, err
		}
		s = &Session{ID: l.id, Consumer: consumer, Indexer: indexer, Price: l.price, Start: now,
			End: now.Add(time.Duration(l.units) * UnitLength), Mode: pb.ServiceMode_SERVICE_MODE_RETAIL, Epoch: l.epoch}
	default:
		bk = b.findBooking(id)
		if bk == nil {
			if b.wasLapsed(id) {
				return nil, fmt.Errorf("%w: session %s: the lease or booked block ran out before arrival", ErrLeaseLapsed, sid)
			}
			return nil, fmt.Errorf("%w: session %s", ErrNoReservation, sid)
		}
		if err := checkTicket(bk.Consumer, bk.Indexer, bk.App, pb.ServiceMode_SERVICE_MODE_WHOLESALE, bk.Epoch, bk.Price, bk.Units); err != nil {
			return nil, err
		}
		switch {
		case t.GetStartUnixMs() != bk.Start.UnixMilli():
			return nil, mismatch("start")
		case bk.Arrived:
			return nil, fmt.Errorf("%w: session %s: the booked block was already used", ErrNoReservation, sid)
		case now.Before(bk.Start.Add(-ArriveEarly)):
			return nil, fmt.Errorf("%w: session %s starts at %s", ErrTooEarly, sid, bk.Start.UTC().Format(time.RFC3339))
		}
		s = &Session{ID: bk.ID, Consumer: consumer, Indexer: indexer, Price: bk.Price, Start: now, End: bk.End,
			Mode: pb.ServiceMode_SERVICE_MODE_WHOLESALE, Epoch: bk.Epoch}
	}

	if st := c.life.State(); st != stateStandby {
		return nil, fmt.Errorf("container: admit session %s: %w", sid, &TransitionError{From: st, Event: EvSessionStarted})
	}
	// Durable order: the session first, then the state; undo the session if the state cannot move.
	b.session = s
	if err := c.saveSessions(ctx); err != nil {
		b.session = nil
		return nil, fmt.Errorf("container: admit session %s: %w", sid, err)
	}
	if err := c.sessionTransition(ctx, EvSessionStarted, EvSessionEnded); err != nil {
		b.session = nil
		if serr := c.saveSessions(ctx); serr != nil {
			c.log.Warn("clear refused session", "err", serr)
		}
		return nil, fmt.Errorf("container: admit session %s: %w", sid, err)
	}
	if bk != nil {
		bk.Arrived = true
		if err := c.saveBookings(ctx); err != nil {
			c.log.Warn("mark booking used", "err", err)
		}
	} else {
		b.lease = nil
	}
	c.log.Info("session started", "session", sid, "mode", s.Mode.String(), "ends", s.End)
	c.beatNow()
	out := *s
	return &out, nil
}

// Renew extends the live session by units at the same price if no booked block is in the way, and
// returns its new end.
func (c *Container) Renew(ctx context.Context, sessionID []byte, units uint32) (time.Time, error) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	now := c.cfg.Clock.Now()
	c.settleLocked(ctx, now)
	b := &c.book
	s := b.session
	if s == nil || !bytes.Equal(s.ID, sessionID) {
		return time.Time{}, fmt.Errorf("%w: %s", ErrNoSession, hexID(sessionID))
	}
	if units == 0 || units > MaxUnits {
		return time.Time{}, fmt.Errorf("%w: renew by %d units: want 1 to %d", ErrBadRequest, units, MaxUnits)
	}
	var own *Booking
	if s.Mode == pb.ServiceMode_SERVICE_MODE_WHOLESALE {
		own = b.findBooking(s.ID)
	}
	oldEnd := s.End
	newEnd := oldEnd.Add(time.Duration(units) * UnitLength)
	if b.overlaps(oldEnd, newEnd, own) {
		return oldEnd, fmt.Errorf("%w: renewing until %s runs into a booked block", ErrCalendar, newEnd.UTC().Format(time.RFC3339))
	}
	s.End = newEnd
	if err := c.saveSessions(ctx); err != nil {
		s.End = oldEnd
		return oldEnd, fmt.Errorf("container: renew session: %w", err)
	}
	if own != nil {
		own.End, own.Units = newEnd, own.Units+units
		if err := c.saveBookings(ctx); err != nil {
			c.log.Warn("extend booking", "err", err)
		}
	}
	c.beatNow()
	return newEnd, nil
}

// EndSession ends a live session (the consumer left, the stream broke): busy -> standby, durably.
// Ending a session that is not live is not an error.
func (c *Container) EndSession(ctx context.Context, sessionID []byte) error {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	if s := c.book.session; s == nil || !bytes.Equal(s.ID, sessionID) {
		return nil
	}
	return c.endLocked(ctx, "ended")
}

// SetFee changes the ask (micro-units per 15-minute session) and republishes the record.
func (c *Container) SetFee(_ context.Context, micros uint64) error {
	if micros > MaxFee {
		return fmt.Errorf("%w: fee %d micro-units is above the limit %d", ErrBadRequest, micros, uint64(MaxFee))
	}
	c.fee.Store(micros)
	c.log.Info("fee changed", "session_fee_micros", micros)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// Fee is the ask in force, micro-units per 15-minute session.
func (c *Container) Fee() uint64 { return c.fee.Load() }

// Sessions lists the live sessions (at most one).
func (c *Container) Sessions() []Session {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	if c.book.session == nil {
		return nil
	}
	return []Session{*c.book.session}
}

// Bookings lists the wholesale calendar ahead, the earliest block first.
func (c *Container) Bookings() []Booking {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	out := make([]Booking, 0, len(c.book.bookings))
	for _, bk := range c.book.bookings {
		out = append(out, *bk)
	}
	return out
}

// Interrupted lists the sessions that were live when the process last stopped: a session does not
// survive a restart, so they ended then.
func (c *Container) Interrupted() []Session {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	return slices.Clone(c.book.interrupted)
}

// endLocked ends the live session: busy -> standby.
func (c *Container) endLocked(ctx context.Context, why string) error {
	s := c.book.session
	c.book.session = nil
	err := c.saveSessions(ctx)
	if c.life.State() == stateBusy {
		// Not undone if it cannot be stored: the session is over either way, and a restart
		// moves busy to standby.
		err = errors.Join(err, c.sessionTransition(ctx, EvSessionEnded, 0))
	}
	c.log.Info("session "+why, "session", hexID(s.ID))
	c.beatNow()
	if err != nil {
		return fmt.Errorf("container: end session: %w", err)
	}
	return nil
}

// settle drops what has lapsed by now: a lease the consumer did not take up, a session past its end,
// booked blocks that are over.
func (c *Container) settle(ctx context.Context) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	c.settleLocked(ctx, c.cfg.Clock.Now())
}

func (c *Container) settleLocked(ctx context.Context, now time.Time) {
	b := &c.book
	if l := b.lease; l != nil && !now.Before(l.expires) {
		b.rememberLapsed(l.id)
		b.lease = nil
		c.log.Debug("lease lapsed", "session", hexID(l.id))
		c.beatNow()
	}
	if s := b.session; s != nil && !now.Before(s.End) {
		if err := c.endLocked(ctx, "reached its end"); err != nil {
			c.log.Warn("end session", "err", err)
		}
	}
	n := len(b.bookings)
	b.bookings = slices.DeleteFunc(b.bookings, func(bk *Booking) bool {
		if now.Before(bk.End) {
			return false
		}
		b.rememberLapsed(bk.ID)
		return true
	})
	if len(b.bookings) != n {
		if err := c.saveBookings(ctx); err != nil {
			c.log.Warn("prune bookings", "err", err)
		}
	}
}

// nextDeadline is how long until settle has something to do; false when nothing is pending.
func (c *Container) nextDeadline() (time.Duration, bool) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if c.book.lease != nil {
		earliest(c.book.lease.expires)
	}
	if c.book.session != nil {
		earliest(c.book.session.End)
	}
	for _, bk := range c.book.bookings {
		earliest(bk.End)
	}
	if next.IsZero() {
		return 0, false
	}
	return max(c.cfg.Clock.Until(next), 0), true
}

// heartbeatBook fills a heartbeat's reservation fields.
func (c *Container) heartbeatBook(hb *pb.Heartbeat) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	now := c.cfg.Clock.Now()
	if t := c.book.reservedUntil(); t.After(now) {
		hb.ReservedUntilUnixMs = t.UnixMilli()
	}
	for _, bk := range c.book.bookings {
		if len(hb.Bookings) == MaxHeartbeatBookings {
			break
		}
		if bk.End.After(now) {
			hb.Bookings = append(hb.Bookings, &pb.Booking{StartUnixMs: bk.Start.UnixMilli(), EndUnixMs: bk.End.UnixMilli()})
		}
	}
	hb.SessionFeeMicros = c.fee.Load()
}

// sessionTransition moves the lifecycle for a session and stores the state; if it cannot be stored,
// undo (unless 0) moves it back.
func (c *Container) sessionTransition(ctx context.Context, ev, undo Event) error {
	s, err := c.life.Apply(ev)
	if err != nil {
		return err
	}
	if err := c.store.Put(ctx, keyState, MarshalState(s)); err != nil {
		if undo != 0 {
			if _, uerr := c.life.Apply(undo); uerr != nil {
				c.log.Warn("undo state change", "err", uerr)
			}
		}
		return fmt.Errorf("container: persist state %s: %w", StateName(s), err)
	}
	c.log.Info("state changed", "event", ev.String(), "state", StateName(s))
	return nil
}

// hexID formats a session ID for logs and errors; untrusted IDs are cut short.
func hexID(id []byte) string {
	if len(id) > 16 {
		return fmt.Sprintf("%x...", id[:16])
	}
	return fmt.Sprintf("%x", id)
}

// beatNow asks the loop for a heartbeat, so that indexers learn of a change quickly.
func (c *Container) beatNow() {
	select {
	case c.beat <- struct{}{}:
	default:
	}
}

// Stored forms: JSON, peer IDs as bytes (base64), times as Unix milliseconds.
type storedBooking struct {
	ID       []byte `json:"id"`
	Consumer []byte `json:"consumer"`
	Indexer  []byte `json:"indexer"`
	App      string `json:"app"`
	Price    uint64 `json:"price"`
	Units    uint32 `json:"units"`
	Epoch    uint64 `json:"epoch"`
	Start    int64  `json:"start"`
	End      int64  `json:"end"`
	Arrived  bool   `json:"arrived,omitempty"`
}

type storedSession struct {
	ID       []byte `json:"id"`
	Consumer []byte `json:"consumer"`
	Indexer  []byte `json:"indexer"`
	Price    uint64 `json:"price"`
	Start    int64  `json:"start"`
	End      int64  `json:"end"`
	Mode     int32  `json:"mode"`
	Epoch    uint64 `json:"epoch"`
}

func (c *Container) saveBookings(ctx context.Context) error {
	out := make([]storedBooking, 0, len(c.book.bookings))
	for _, bk := range c.book.bookings {
		out = append(out, storedBooking{ID: bk.ID, Consumer: []byte(bk.Consumer), Indexer: []byte(bk.Indexer), App: bk.App,
			Price: bk.Price, Units: bk.Units, Epoch: bk.Epoch, Start: bk.Start.UnixMilli(), End: bk.End.UnixMilli(), Arrived: bk.Arrived})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if err := c.store.Put(ctx, keyBookings, b); err != nil {
		return fmt.Errorf("container: persist bookings: %w", err)
	}
	return nil
}

func (c *Container) saveSessions(ctx context.Context) error {
	out := []storedSession{}
	if s := c.book.session; s != nil {
		out = append(out, storedSession{ID: s.ID, Consumer: []byte(s.Consumer), Indexer: []byte(s.Indexer), Price: s.Price,
			Start: s.Start.UnixMilli(), End: s.End.UnixMilli(), Mode: int32(s.Mode), Epoch: s.Epoch})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if err := c.store.Put(ctx, keySessions, b); err != nil {
		return fmt.Errorf("container: persist sessions: %w", err)
	}
	return nil
}

// loadBook restores the calendar and the sessions a restart interrupted.
func (c *Container) loadBook(ctx context.Context) error {
	if v, ok, err := c.store.Get(ctx, keyBookings); err != nil {
		return fmt.Errorf("container: load bookings: %w", err)
	} else if ok {
		var in []storedBooking
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("container: load bookings: %w", err)
		}
		for _, s := range in {
			bk := &Booking{ID: s.ID, Consumer: string(s.Consumer), Indexer: string(s.Indexer), App: s.App, Price: s.Price,
				Units: s.Units, Epoch: s.Epoch, Start: time.UnixMilli(s.Start), End: time.UnixMilli(s.End), Arrived: s.Arrived}
			if len(bk.ID) == 0 || !bk.Start.Before(bk.End) || c.book.overlaps(bk.Start, bk.End, nil) {
				return fmt.Errorf("container: load bookings: invalid or overlapping block %x", bk.ID)
			}
			c.book.insert(bk)
		}
	}
	if v, ok, err := c.store.Get(ctx, keySessions); err != nil {
		return fmt.Errorf("container: load sessions: %w", err)
	} else if ok {
		var in []storedSession
		if err := json.Unmarshal(v, &in); err != nil {
			return fmt.Errorf("container: load sessions: %w", err)
		}
		for _, s := range in {
			c.book.interrupted = append(c.book.interrupted, Session{ID: s.ID, Consumer: string(s.Consumer), Indexer: string(s.Indexer),
				Price: s.Price, Start: time.UnixMilli(s.Start), End: time.UnixMilli(s.End), Mode: pb.ServiceMode(s.Mode), Epoch: s.Epoch})
		}
	}
	return nil
}

// restartBook forgets the sessions a restart cut off (they stay listed by Interrupted).
func (c *Container) restartBook(ctx context.Context) {
	c.bookMu.Lock()
	defer c.bookMu.Unlock()
	for _, s := range c.book.interrupted {
		c.log.Warn("a restart ended a live session", "session", hexID(s.ID), "mode", s.Mode.String())
	}
	if len(c.book.interrupted) > 0 {
		if err := c.saveSessions(ctx); err != nil {
			c.log.Warn("clear interrupted sessions", "err", err)
		}
	}
}
