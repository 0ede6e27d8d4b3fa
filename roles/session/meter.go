package session

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// UnitMinutes is the length of the unit a price is quoted for: a 15-minute session.
const UnitMinutes = 15

// SessionInfo is what both sides know of a session from its ticket, and when it started.
type SessionInfo struct {
	ID                           []byte
	Container, Consumer, Indexer []byte // peer IDs, raw bytes
	Epoch                        uint64
	Price                        uint64 // micro-units per 15-minute unit
	Start                        time.Time
}

// ErrReceipt is wrapped by every receipt CheckReceipt refuses.
var ErrReceipt = errors.New("session: receipt refused")

// Usage meters a session that started at start, at priceMicros per 15-minute unit, as of now:
// minutes is the number of whole minutes started (at least 1 once the session has started, 0 before),
// and amountMicros is price * minutes / 15, rounded down. The arithmetic is exact for every price;
// an amount beyond uint64 saturates.
func Usage(start, now time.Time, priceMicros uint64) (minutes uint32, amountMicros uint64) {
	if now.Before(start) {
		return 0, 0
	}
	elapsed := now.Sub(start) // saturates at about 292 years
	m := uint64(elapsed / time.Minute)
	if elapsed%time.Minute != 0 || m == 0 {
		m++
	}
	minutes = uint32(min(m, math.MaxUint32))
	return minutes, Amount(priceMicros, minutes)
}

// Amount is priceMicros * minutes / 15, rounded down, saturating at the largest uint64.
func Amount(priceMicros uint64, minutes uint32) uint64 {
	hi, lo := bits.Mul64(priceMicros, uint64(minutes))
	if hi >= UnitMinutes {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, UnitMinutes)
	return q
}

// NextReceipt builds the container's receipt after prev (nil for the first): sequence prev.seq+1,
// cumulative minutes and amount as of now (never fewer minutes than prev counted), final when the
// session ends. The caller seals it.
func NextReceipt(prev *pb.UsageReceipt, s SessionInfo, now time.Time, final bool) *pb.UsageReceipt {
	minutes, _ := Usage(s.Start, now, s.Price)
	minutes = max(minutes, prev.GetMinutes())
	return &pb.UsageReceipt{
		SessionId:    s.ID,
		Container:    s.Container,
		Consumer:     s.Consumer,
		Indexer:      s.Indexer,
		Epoch:        s.Epoch,
		Seq:          prev.GetSeq() + 1,
		Minutes:      minutes,
		PriceMicros:  s.Price,
		AmountMicros: Amount(s.Price, minutes),
		IssuedUnixMs: now.UnixMilli(),
		Final:        final,
	}
}

// CheckReceipt is what a consumer verifies before it countersigns next, the receipt after prev (nil
// for the first): it names this session, container, consumer, indexer, epoch and price; its
// sequence follows prev's and prev was not final; its minutes do not go back and are no more than
// the session's time so far allows, with slack for the two clocks and the transit; its amount
// follows from its minutes. The error wraps ErrReceipt and says which check failed.
func CheckReceipt(prev, next *pb.UsageReceipt, s SessionInfo, now time.Time, slack time.Duration) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrReceipt}, args...)...)
	}
	switch {
	case next == nil:
		return bad("no receipt")
	case !bytes.Equal(next.SessionId, s.ID):
		return bad("session %x, want %x", next.SessionId, s.ID)
	case !bytes.Equal(next.Container, s.Container):
		return bad("another container")
	case !bytes.Equal(next.Consumer, s.Consumer):
		return bad("another consumer")
	case !bytes.Equal(next.Indexer, s.Indexer):
		return bad("another indexer")
	case next.Epoch != s.Epoch:
		return bad("epoch %d, want %d", next.Epoch, s.Epoch)
	case next.PriceMicros != s.Price:
		return bad("price %d, want %d", next.PriceMicros, s.Price)
	case prev.GetFinal():
		return bad("receipt %d after the final one", next.Seq)
	case next.Seq != prev.GetSeq()+1:
		return bad("sequence %d, want %d", next.Seq, prev.GetSeq()+1)
	case next.Minutes < prev.GetMinutes():
		return bad("%d minutes, fewer than the %d already counted", next.Minutes, prev.GetMinutes())
	}
	if limit, _ := Usage(s.Start, now.Add(slack), s.Price); next.Minutes > limit {
		return bad("%d minutes, but at most %d have started", next.Minutes, limit)
	}
	if want := Amount(s.Price, next.Minutes); next.AmountMicros != want {
		return bad("amount %d for %d minutes, want %d", next.AmountMicros, next.Minutes, want)
	}
	return nil
}
