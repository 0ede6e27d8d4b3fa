package session

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestUsage(t *testing.T) {
	cases := []struct {
		after   time.Duration
		price   uint64
		minutes uint32
		amount  uint64
	}{
		{-time.Nanosecond, 150, 0, 0},
		{0, 150, 1, 10},
		{time.Nanosecond, 150, 1, 10},
		{time.Minute - time.Nanosecond, 150, 1, 10},
		{time.Minute, 150, 1, 10},
		{time.Minute + time.Nanosecond, 150, 2, 20},
		{14*time.Minute + time.Second, 150, 15, 150},
		{15 * time.Minute, 150, 15, 150},
		{15 * time.Minute, 100, 15, 100},
		{time.Minute, 100, 1, 6}, // 100/15 rounded down
		{7 * time.Minute, 100, 7, 46},
		{time.Hour, 1_000_000_000_000_000, 60, 4_000_000_000_000_000},
		{time.Minute, 0, 1, 0},
	}
	for _, tc := range cases {
		m, a := Usage(start, start.Add(tc.after), tc.price)
		if m != tc.minutes || a != tc.amount {
			t.Errorf("Usage(+%v, %d) = %d min, %d; want %d min, %d", tc.after, tc.price, m, a, tc.minutes, tc.amount)
		}
	}
	// Centuries later: elapsed time saturates (at about 292 years) and so does an amount beyond uint64.
	m, a := Usage(start, start.AddDate(1000, 0, 0), 1_000_000_000_000_000)
	if m != uint32(math.MaxInt64/int64(time.Minute))+1 || a != math.MaxUint64 {
		t.Errorf("saturated usage %d min, %d", m, a)
	}
}

// Amount against big-integer arithmetic.
func TestAmountExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prices := []uint64{0, 1, 14, 15, 1e15, math.MaxUint64 / 2, math.MaxUint64}
	for range 2000 {
		prices = append(prices, rng.Uint64()>>rng.IntN(64))
	}
	for _, p := range prices {
		for _, m := range []uint32{0, 1, 15, 59, math.MaxUint32, rng.Uint32()} {
			want := new(big.Int).Mul(new(big.Int).SetUint64(p), big.NewInt(int64(m)))
			want.Quo(want, big.NewInt(15))
			got := Amount(p, m)
			if want.IsUint64() {
				if got != want.Uint64() {
					t.Fatalf("Amount(%d, %d) = %d, want %s", p, m, got, want)
				}
			} else if got != math.MaxUint64 {
				t.Fatalf("Amount(%d, %d) = %d, want saturation", p, m, got)
			}
		}
	}
}

var info = SessionInfo{
	ID: []byte("0123456789abcdef"), Container: []byte("container"), Consumer: []byte("consumer"),
	Indexer: []byte("indexer"), Epoch: 42, Price: 150_000, Start: start,
}

func TestReceiptChain(t *testing.T) {
	var prev *pb.UsageReceipt
	for i := 1; i <= 20; i++ {
		now := start.Add(time.Duration(i) * time.Minute)
		final := i == 20
		r := NextReceipt(prev, info, now.Add(-2*time.Second), final) // container's clock a little behind
		if r.Seq != uint32(i) || r.Final != final {
			t.Fatalf("receipt %d: seq %d final %v", i, r.Seq, r.Final)
		}
		if r.Minutes != uint32(i) || r.AmountMicros != info.Price*uint64(i)/15 {
			t.Fatalf("receipt %d: %d minutes, %d", i, r.Minutes, r.AmountMicros)
		}
		if err := CheckReceipt(prev, r, info, now, 5*time.Second); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		prev = r
	}
	if err := CheckReceipt(prev, NextReceipt(prev, info, start.Add(time.Hour), false), info, start.Add(time.Hour), time.Second); !errors.Is(err, ErrReceipt) {
		t.Fatalf("receipt after the final one: %v", err)
	}
}

func TestNextReceiptNeverGoesBack(t *testing.T) {
	prev := NextReceipt(nil, info, start.Add(10*time.Minute), false)
	r := NextReceipt(prev, info, start.Add(5*time.Minute), false) // the clock stepped back
	if r.Minutes != prev.Minutes || r.AmountMicros != prev.AmountMicros || r.Seq != 2 {
		t.Fatalf("receipt went back: %v after %v", r, prev)
	}
}

func TestCheckReceiptRefuses(t *testing.T) {
	now := start.Add(3*time.Minute + 30*time.Second)
	prev := NextReceipt(nil, info, start.Add(2*time.Minute), false)
	good := NextReceipt(prev, info, now, false)
	if err := CheckReceipt(prev, good, info, now, time.Second); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		prev *pb.UsageReceipt
		edit func(r *pb.UsageReceipt)
	}{
		{"other session", prev, func(r *pb.UsageReceipt) { r.SessionId = []byte("x") }},
		{"other container", prev, func(r *pb.UsageReceipt) { r.Container = []byte("x") }},
		{"other consumer", prev, func(r *pb.UsageReceipt) { r.Consumer = []byte("x") }},
		{"other indexer", prev, func(r *pb.UsageReceipt) { r.Indexer = []byte("x") }},
		{"other epoch", prev, func(r *pb.UsageReceipt) { r.Epoch++ }},
		{"higher price", prev, func(r *pb.UsageReceipt) { r.PriceMicros++; r.AmountMicros = Amount(r.PriceMicros, r.Minutes) }},
		{"sequence skipped", prev, func(r *pb.UsageReceipt) { r.Seq++ }},
		{"sequence repeated", prev, func(r *pb.UsageReceipt) { r.Seq-- }},
		{"first receipt not 1", nil, func(r *pb.UsageReceipt) {}},
		{"minutes back", prev, func(r *pb.UsageReceipt) { r.Minutes = 1; r.AmountMicros = Amount(r.PriceMicros, 1) }},
		{"minutes not yet started", prev, func(r *pb.UsageReceipt) { r.Minutes = 6; r.AmountMicros = Amount(r.PriceMicros, 6) }},
		{"amount off by one", prev, func(r *pb.UsageReceipt) { r.AmountMicros++ }},
		{"after the final", func() *pb.UsageReceipt { p := proto.Clone(prev).(*pb.UsageReceipt); p.Final = true; return p }(), func(r *pb.UsageReceipt) {}},
	}
	for _, tc := range cases {
		r := proto.Clone(good).(*pb.UsageReceipt)
		tc.edit(r)
		if err := CheckReceipt(tc.prev, r, info, now, time.Second); !errors.Is(err, ErrReceipt) {
			t.Errorf("%s: %v, want ErrReceipt", tc.name, err)
		}
	}
	if err := CheckReceipt(prev, nil, info, now, time.Second); !errors.Is(err, ErrReceipt) {
		t.Errorf("nil receipt: %v", err)
	}
	// Slack admits a minute the consumer's clock has not reached yet, and no more.
	early := NextReceipt(prev, info, start.Add(4*time.Minute+time.Second), false)
	if err := CheckReceipt(prev, early, info, now, 31*time.Second); err != nil {
		t.Errorf("within slack: %v", err)
	}
	if err := CheckReceipt(prev, early, info, now, 30*time.Second); !errors.Is(err, ErrReceipt) {
		t.Errorf("beyond slack: %v", err)
	}
}

// FuzzCheckReceipt: a receipt from the network, however malformed, is checked without panic, and
// an accepted one follows the metering rule.
func FuzzCheckReceipt(f *testing.F) {
	prev := NextReceipt(nil, info, start.Add(time.Minute), false)
	for _, r := range []*pb.UsageReceipt{NextReceipt(prev, info, start.Add(2*time.Minute), false), prev} {
		b, _ := proto.Marshal(r)
		f.Add(b, int64(150))
	}
	f.Fuzz(func(t *testing.T, data []byte, secs int64) {
		r := &pb.UsageReceipt{}
		if proto.Unmarshal(data, r) != nil {
			return
		}
		now := start.Add(time.Duration(secs) * time.Second)
		if CheckReceipt(prev, r, info, now, 5*time.Second) != nil {
			return
		}
		limit, _ := Usage(info.Start, now.Add(5*time.Second), info.Price)
		if r.Seq != 2 || r.Minutes < prev.Minutes || r.Minutes > limit || r.AmountMicros != Amount(info.Price, r.Minutes) {
			t.Fatalf("accepted %v", r)
		}
	})
}
