package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/session"
)

// SessionStream is the consumer's end of a session stream with the container.
type SessionStream interface {
	Open(*pb.SessionOpen) error
	Send(*pb.SessionMsg) error
	Recv() (*pb.SessionMsg, error)
}

// SessionOptions configure the consumer's side of a session.
type SessionOptions struct {
	// Hold is how long the consumer stays before it ends the session (0: it ends right after the
	// container accepts, which still yields one co-signed receipt for the minute started). A hold
	// beyond the session's end renews it, one 15-minute unit at a time, RenewAhead before it ends.
	Hold time.Duration
	// RenewAhead is how long before the session's end a renewal is asked for; 0: a minute.
	RenewAhead time.Duration
	// Countersign seals the consumer's ReceiptAck over a container's receipt envelope.
	Countersign func(receipt []byte) (ack []byte, err error)
	// OpenReceipt verifies a receipt envelope: signed by the receipt's container.
	OpenReceipt func(raw []byte) (*pb.UsageReceipt, error)
	// Keep stores a co-signed receipt durably before the session goes on.
	Keep func(ack []byte) error
	// Slack is how far a receipt's minutes may run ahead of the consumer's own count (clock skew and
	// the time the ticket took to reach the container); 0: 5 seconds.
	Slack time.Duration
	Clock clock.Clock
	// Accepted, when set, is called once the container has admitted the consumer (the render path
	// starts then).
	Accepted func()
}

// SessionReport says how a session went.
type SessionReport struct {
	Accepted bool   `json:"accepted"`
	Refused  string `json:"refused,omitempty"`
	Renewals int    `json:"renewals"`
	// RenewRefused says why the container did not renew (its calendar was booked); the session then
	// ends at Ends.
	RenewRefused string    `json:"renew_refused,omitempty"`
	Started      time.Time `json:"started"`
	Ends         time.Time `json:"ends"`
	Receipts     int       `json:"receipts"` // co-signed and kept
	Minutes      uint32    `json:"minutes"`
	Amount       uint64    `json:"amount_micros"`
}

// ErrSessionRefused is returned when the container does not admit the consumer.
var ErrSessionRefused = errors.New("consumer: container refused the session")

// RunSession presents the ticket to the container, then countersigns each usage receipt it sends
// after checking it against the consumer's own count, keeps it durably, and ends the session after
// Hold (or when the container ends it) with a final co-signed receipt.
func RunSession(ctx context.Context, st SessionStream, tk *pb.SessionTicket, ticketRaw []byte, o SessionOptions) (*SessionReport, error) {
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Slack <= 0 {
		o.Slack = 5 * time.Second
	}
	rep := &SessionReport{}
	if err := st.Open(&pb.SessionOpen{Ticket: ticketRaw}); err != nil {
		return rep, err
	}
	first, err := st.Recv()
	if err != nil {
		return rep, fmt.Errorf("consumer: session: %w", err)
	}
	if !first.Accepted {
		rep.Refused = first.Refused
		return rep, fmt.Errorf("%w: %s", ErrSessionRefused, first.Refused)
	}
	rep.Accepted, rep.Started, rep.Ends = true, o.Clock.Now(), time.UnixMilli(first.EndsUnixMs)
	if o.Accepted != nil {
		o.Accepted()
	}
	info := session.SessionInfo{
		ID: tk.SessionId, Container: tk.Container, Consumer: tk.Consumer, Indexer: tk.Indexer,
		Epoch: tk.Epoch, Price: tk.PriceMicros, Start: rep.Started,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the reader below stops forwarding; the caller closes the stream
	msgs := make(chan *pb.SessionMsg)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	if o.RenewAhead <= 0 {
		o.RenewAhead = time.Minute
	}
	hold := o.Clock.Timer(o.Hold)
	defer hold.Stop()
	holdUntil := rep.Started.Add(o.Hold)
	// A renewal is asked for RenewAhead before the session's end while the hold goes beyond it.
	var renewC <-chan time.Time
	var renewTimer *clock.Timer
	renewing := false
	scheduleRenew := func() {
		if rep.RenewRefused == "" && holdUntil.After(rep.Ends) {
			if renewTimer != nil {
				renewTimer.Stop()
			}
			renewTimer = o.Clock.Timer(max(0, o.Clock.Until(rep.Ends.Add(-o.RenewAhead))))
			renewC = renewTimer.C
		}
	}
	scheduleRenew()
	defer func() {
		if renewTimer != nil {
			renewTimer.Stop()
		}
	}()
	var prev *pb.UsageReceipt
	ended := false
	for {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-renewC:
			if !ended && !renewing {
				renewing = true
				if err := st.Send(&pb.SessionMsg{Renew: 1}); err != nil {
					return rep, err
				}
			}
		case err := <-errc:
			return rep, fmt.Errorf("consumer: session ended without a final receipt: %w", err)
		case <-hold.C:
			if !ended {
				ended = true
				if err := st.Send(&pb.SessionMsg{End: true}); err != nil {
					return rep, err
				}
			}
		case m := <-msgs:
			if len(m.Receipt) == 0 {
				if renewing { // the answer to a renewal
					renewing = false
					if m.Refused != "" {
						rep.RenewRefused = m.Refused
					} else if end := time.UnixMilli(m.EndsUnixMs); end.After(rep.Ends) {
						rep.Ends = end
						rep.Renewals++
						scheduleRenew()
					}
				}
				continue
			}
			r, err := o.OpenReceipt(m.Receipt)
			if err == nil {
				err = session.CheckReceipt(prev, r, info, o.Clock.Now(), o.Slack)
			}
			if err != nil {
				return rep, fmt.Errorf("consumer: refusing to countersign: %w", err)
			}
			ack, err := o.Countersign(m.Receipt)
			if err != nil {
				return rep, err
			}
			if err := o.Keep(ack); err != nil {
				return rep, fmt.Errorf("consumer: keep receipt %d: %w", r.Seq, err)
			}
			if err := st.Send(&pb.SessionMsg{Ack: ack}); err != nil {
				return rep, err
			}
			prev = r
			rep.Receipts, rep.Minutes, rep.Amount = rep.Receipts+1, r.Minutes, r.AmountMicros
			if r.Final {
				return rep, nil
			}
		}
	}
}
