package consumer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// MatchNet is what getting matched needs from the network.
type MatchNet interface {
	// Self is the consumer's own peer ID (raw bytes as a string).
	Self() string
	// Indexers returns the current epoch's committee, every ticket already verified, and the epoch.
	Indexers(ctx context.Context) (indexers []string, epoch uint64, err error)
	// Match sends req to indexer on /rendermesh/match/1.0.0 and returns its answer.
	Match(ctx context.Context, indexer string, req *pb.MatchRequest) (*pb.MatchResponse, error)
	// OpenTicket verifies a session ticket envelope and returns it with its signer.
	OpenTicket(raw []byte) (*pb.SessionTicket, string, error)
}

// Connected is what a MatchNet may also say: whether it holds a connection to a peer now. Connect
// then asks the indexers it is connected to first: a request on a new connection pays for the
// connection (a round trip at least) before it is sent.
type Connected interface {
	Connected(peer string) bool
}

// Defaults of ConnectOptions.
const (
	DefaultAttemptTimeout = 2 * time.Second
	DefaultMaxAttempts    = 3
)

// ConnectOptions tune how a consumer gets matched.
type ConnectOptions struct {
	// AttemptTimeout bounds one indexer's answer; a slower indexer is given up and the next one asked.
	AttemptTimeout time.Duration
	// MaxAttempts bounds how many indexers are asked.
	MaxAttempts int
	Clock       clock.Clock
}

// Attempt is one indexer asked.
type Attempt struct {
	Indexer string        `json:"indexer"`
	Took    time.Duration `json:"-"`
	Ms      float64       `json:"ms"`
	Refused string        `json:"refused,omitempty"`
	Err     string        `json:"error,omitempty"`
}

// Match is the outcome of a match: a verified session ticket, or why there is none.
type Match struct {
	Matched   bool
	Ticket    *pb.SessionTicket
	TicketRaw []byte
	// ICEServers are the TURN relays (with credentials) the indexer handed out for the render path.
	ICEServers []*pb.IceServer
	Container  string // peer ID, raw
	Indexer    string // the indexer that matched (or refused last), raw
	Epoch      uint64
	Took       time.Duration // from the first request to the verified answer
	Reason     string        // the filter that emptied the list, or why no indexer answered
	Detail     string
	Attempts   []Attempt
}

// Errors of Connect.
var (
	ErrNoIndexers = errors.New("consumer: no indexers in this epoch")
	ErrBadTicket  = errors.New("consumer: indexer answered with an invalid session ticket")
)

// Refusals after which another indexer is worth asking: the indexer cannot serve, lost the race
// for every candidate, or has not yet indexed any container (no_containers: a member that just
// joined the committee is still learning the network from heartbeats, while the others may have
// it). Refusals by a filter are final: every indexer applies the same rule to the same network.
var retryable = []string{"not_indexer", "overloaded", "reservation", indexer.FilterNone, ""}

// Connect asks the epoch's indexers for a match, one after another, until one matches or refuses
// for good: an indexer that fails, is slower than AttemptTimeout or cannot serve costs one retry.
// The containers an indexer could not reach are excluded from the requests to the next ones.
// The indexers are tried in an order derived from the request ID, so consumers spread over the
// committee and a retried request does not go back to the indexer that failed it; when net
// implements Connected, the indexers it is connected to come first, in that order.
func Connect(ctx context.Context, net MatchNet, req *pb.MatchRequest, o ConnectOptions) (*Match, error) {
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	indexers, ep, err := net.Indexers(ctx)
	if err != nil {
		return nil, err
	}
	if len(indexers) == 0 {
		return nil, fmt.Errorf("%w %d", ErrNoIndexers, ep)
	}
	req.Epoch = ep
	order := Order(req.RequestId, indexers)
	if c, ok := net.(Connected); ok {
		order = ConnectedFirst(order, c)
	}
	m := &Match{Epoch: ep}
	began := o.Clock.Now()
	for _, ix := range order[:min(len(order), o.MaxAttempts)] {
		at := o.Clock.Now()
		actx, cancel := context.WithTimeout(ctx, o.AttemptTimeout)
		resp, err := net.Match(actx, ix, req)
		cancel()
		a := Attempt{Indexer: ix, Took: o.Clock.Since(at)}
		a.Ms = float64(a.Took.Microseconds()) / 1000
		m.Indexer = ix
		switch {
		case err != nil:
			a.Err = err.Error()
			m.Reason, m.Detail = "indexer_failed", err.Error()
		case resp.Matched:
			tk, signer, terr := net.OpenTicket(resp.Ticket)
			if terr == nil {
				terr = checkTicket(tk, signer, ix, net.Self(), req)
			}
			if terr != nil {
				a.Err = fmt.Errorf("%w: %w", ErrBadTicket, terr).Error()
				m.Reason, m.Detail = "bad_ticket", a.Err
				break
			}
			m.Attempts = append(m.Attempts, a)
			m.Matched, m.Ticket, m.TicketRaw, m.Container = true, tk, resp.Ticket, string(tk.Container)
			m.ICEServers = resp.IceServers
			m.Reason, m.Detail = "", ""
			m.Took = o.Clock.Since(began)
			return m, nil
		default:
			a.Refused = resp.Refused
			m.Reason, m.Detail = resp.Refused, resp.Detail
		}
		if err == nil {
			req.Exclude = exclude(req.Exclude, resp.Unreachable)
		}
		m.Attempts = append(m.Attempts, a)
		if err := ctx.Err(); err != nil {
			return m, err
		}
		if a.Refused != "" && !slices.Contains(retryable, a.Refused) {
			break
		}
	}
	m.Took = o.Clock.Since(began)
	return m, nil
}

// exclude adds to a request's exclude list the containers an indexer could not reach (its answer's
// unreachable), so that the next indexer asked does not spend the consumer's wait on them too:
// every indexer ranks the same network alike, so their best candidates are mostly the same. The
// list keeps the first indexer.MaxExclude distinct IDs of plausible length.
func exclude(list, unreachable [][]byte) [][]byte {
	for _, u := range unreachable {
		if len(list) >= indexer.MaxExclude {
			break
		}
		if len(u) == 0 || len(u) > indexer.MaxPeerIDBytes || slices.ContainsFunc(list, func(x []byte) bool { return bytes.Equal(x, u) }) {
			continue
		}
		list = append(list, bytes.Clone(u))
	}
	return list
}

func checkTicket(tk *pb.SessionTicket, signer, indexer, self string, req *pb.MatchRequest) error {
	switch {
	case signer != indexer:
		return fmt.Errorf("signed by another peer than the indexer asked")
	case string(tk.Consumer) != self:
		return fmt.Errorf("issued to another consumer")
	case tk.App != req.App:
		return fmt.Errorf("for app %q, asked %q", tk.App, req.App)
	case req.BudgetMicros != 0 && tk.PriceMicros > req.BudgetMicros:
		return fmt.Errorf("price %d over the budget %d", tk.PriceMicros, req.BudgetMicros)
	}
	return nil
}

// Order is the order in which a request asks the indexers: by SHA-256 of the request ID and the
// indexer's peer ID. It spreads consumers evenly over the committee, and every indexer is asked
// at most once.
func Order(requestID []byte, indexers []string) []string {
	type keyed struct {
		id  string
		key [32]byte
	}
	ks := make([]keyed, 0, len(indexers))
	for _, ix := range indexers {
		h := sha256.New()
		h.Write(requestID)
		h.Write([]byte(ix))
		var k keyed
		k.id = ix
		copy(k.key[:], h.Sum(nil))
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(a.key[:], b.key[:]) })
	out := make([]string, 0, len(ks))
	for i, k := range ks {
		if i > 0 && k.id == ks[i-1].id {
			continue
		}
		out = append(out, k.id)
	}
	return out
}

// ConnectedFirst moves the indexers c is connected to to the front of order, each part keeping
// its order.
func ConnectedFirst(order []string, c Connected) []string {
	out := make([]string, 0, len(order))
	var cold []string
	for _, ix := range order {
		if c.Connected(ix) {
			out = append(out, ix)
		} else {
			cold = append(cold, ix)
		}
	}
	return append(out, cold...)
}
