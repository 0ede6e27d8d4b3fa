package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// committeeRecordBytes is a sealed (or not) committee record of epoch e with n signed tickets.
func committeeRecordBytes(tb testing.TB, e uint64, n int, sealed bool) []byte {
	tb.Helper()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CommitteeRecord{Epoch: e, Sealed: sealed, Tickets: signedTickets(tb, e, n)})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// historyAnswer is what a server writes: each record framed.
func historyAnswer(tb testing.TB, recs ...[]byte) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		if err := writeFrame(&b, r, "committee record"); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Bytes()
}

// A full node serves the records it keeps, from the first asked for, up to the first it lacks or
// the batch's bound; a client reads them over a real stream.
func TestCommitteeHistoryRoundTrip(t *testing.T) {
	kept := map[uint64][]byte{}
	for e := uint64(3); e < 3+MaxHistoryBatch+10; e++ {
		kept[e] = committeeRecordBytes(t, e, 2, true)
	}
	server := startNet(t, testConfig(t, 1))
	client := startNet(t, testConfig(t, 2))
	live := map[uint64][]byte{9: committeeRecordBytes(t, 9, 3, false), 10: committeeRecordBytes(t, 10, 0, false), 11: committeeRecordBytes(t, 11, 1, false)}
	server.ServeCommitteeHistory(func(e uint64) ([]byte, bool) { raw, ok := kept[e]; return raw, ok },
		func(e uint64) ([]byte, bool) { raw, ok := live[e]; return raw, ok })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := client.Host().Connect(ctx, addrInfo(server)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from        uint64
		count, want int
	}{
		{3, 5, 5},                               // within what it keeps
		{70, 20, 3 + MaxHistoryBatch + 10 - 70}, // up to the last it keeps
		{3, 1000, MaxHistoryBatch},              // bounded by the batch
		{1, 5, 0},                               // it keeps nothing from epoch 1
	} {
		recs, err := client.CommitteeHistory(ctx, server.ID(), c.from, c.count)
		if err != nil {
			t.Fatalf("from %d, %d: %v", c.from, c.count, err)
		}
		if len(recs) != c.want {
			t.Fatalf("from %d, %d: %d records, want %d", c.from, c.count, len(recs), c.want)
		}
		for i, r := range recs {
			if r.Epoch != c.from+uint64(i) || !bytes.Equal(r.Raw, kept[r.Epoch]) || len(r.Tickets) != 2 {
				t.Fatalf("from %d: record %d is of epoch %d with %d tickets", c.from, i, r.Epoch, len(r.Tickets))
			}
		}
	}
	// Live views: unsealed records, at most MaxLiveEpochs of them, up to the first it lacks.
	for _, c := range []struct {
		from        uint64
		count, want int
	}{
		{9, 2, 2},
		{9, 5, MaxLiveEpochs},
		{11, 2, 1},
		{12, 2, 0},
	} {
		recs, err := client.LiveCommittees(ctx, server.ID(), c.from, c.count)
		if err != nil {
			t.Fatalf("live from %d, %d: %v", c.from, c.count, err)
		}
		if len(recs) != c.want {
			t.Fatalf("live from %d, %d: %d records, want %d", c.from, c.count, len(recs), c.want)
		}
		for i, r := range recs {
			if r.Epoch != c.from+uint64(i) || !bytes.Equal(r.Raw, live[r.Epoch]) {
				t.Fatalf("live from %d: record %d is of epoch %d", c.from, i, r.Epoch)
			}
		}
	}
	// A node that serves no live views says so; its history still answers.
	other := startNet(t, testConfig(t, 3))
	other.ServeCommitteeHistory(func(e uint64) ([]byte, bool) { raw, ok := kept[e]; return raw, ok }, nil)
	if err := client.Host().Connect(ctx, addrInfo(other)); err != nil {
		t.Fatal(err)
	}
	if recs, err := client.LiveCommittees(ctx, other.ID(), 9, 2); err == nil {
		t.Errorf("live committees from a node that serves none: %d records, no error", len(recs))
	}
	if recs, err := client.CommitteeHistory(ctx, other.ID(), 3, 2); err != nil || len(recs) != 2 {
		t.Errorf("history from a node that serves no live views: %d records, %v", len(recs), err)
	}
	if got := client.HistoryPeers(1, 0); len(got) != 1 {
		t.Errorf("history peers %v, want one", got)
	}
	if got := client.HistoryPeers(4, 0); len(got) != 2 || !slices.Contains(got, server.ID()) || !slices.Contains(got, other.ID()) {
		t.Errorf("history peers %v, want the two servers", got)
	}
}

// Answers that are not what was asked fail whole: a record of another epoch, an unsealed one, more
// than asked, a malformed one, one cut short, one beyond the size bound.
func TestReadCommitteeHistoryRejects(t *testing.T) {
	good := historyAnswer(t, committeeRecordBytes(t, 5, 2, true), committeeRecordBytes(t, 6, 1, true))
	if recs, err := ReadCommitteeHistory(bytes.NewReader(good), 5, 2); err != nil || len(recs) != 2 {
		t.Fatalf("valid answer: %d records, %v", len(recs), err)
	}
	if recs, err := ReadCommitteeHistory(bytes.NewReader(nil), 5, 2); err != nil || len(recs) != 0 {
		t.Fatalf("empty answer: %d records, %v", len(recs), err)
	}
	oversize := make([]byte, 0, 8)
	oversize = append(oversize, 0xff, 0xff, 0xff, 0xff, 0x0f)
	for name, c := range map[string]struct {
		answer []byte
		from   uint64
		count  int
		want   error
	}{
		"another epoch's record":   {good, 4, 2, ErrMalformed},
		"an unsealed record":       {historyAnswer(t, committeeRecordBytes(t, 5, 2, false)), 5, 1, ErrMalformed},
		"more than asked":          {good, 5, 1, ErrMalformed},
		"a malformed record":       {historyAnswer(t, []byte("not a record")), 5, 1, ErrMalformed},
		"a record cut short":       {good[:len(good)-3], 5, 2, io.ErrUnexpectedEOF},
		"a record beyond the size": {oversize, 5, 1, ErrMsgTooLarge},
	} {
		recs, err := ReadCommitteeHistory(bytes.NewReader(c.answer), c.from, c.count)
		if !errors.Is(err, c.want) || recs != nil {
			t.Errorf("%s: %d records, err %v, want %v", name, len(recs), err, c.want)
		}
	}
}

// A live answer may hold unsealed records; everything else an answer must be holds as for history.
func TestReadLiveCommittees(t *testing.T) {
	good := historyAnswer(t, committeeRecordBytes(t, 5, 2, false), committeeRecordBytes(t, 6, 0, true))
	recs, err := ReadLiveCommittees(bytes.NewReader(good), 5, 2)
	if err != nil || len(recs) != 2 || len(recs[0].Tickets) != 2 || len(recs[1].Tickets) != 0 {
		t.Fatalf("valid answer: %d records, %v", len(recs), err)
	}
	for name, c := range map[string]struct {
		from  uint64
		count int
	}{
		"another epoch's record": {6, 2},
		"more than asked":        {5, 1},
	} {
		if recs, err := ReadLiveCommittees(bytes.NewReader(good), c.from, c.count); !errors.Is(err, ErrMalformed) || recs != nil {
			t.Errorf("%s: %d records, err %v", name, len(recs), err)
		}
	}
}

// checkHistoryAnswer is what every fuzzed answer must give: an error and no records, or at most
// count well-formed records of consecutive epochs from 5, each sealed when sealed is asked.
func checkHistoryAnswer(t *testing.T, recs []HistoryRecord, err error, count int, sealed bool) {
	if err != nil {
		if recs != nil {
			t.Fatalf("error %v with records", err)
		}
		return
	}
	if len(recs) > count {
		t.Fatalf("%d records, asked for %d", len(recs), count)
	}
	for i, r := range recs {
		rec := new(pb.CommitteeRecord)
		if r.Epoch != 5+uint64(i) || proto.Unmarshal(r.Raw, rec) != nil || (sealed && !rec.Sealed) || rec.Epoch != r.Epoch || len(r.Tickets) != len(rec.Tickets) {
			t.Fatalf("record %d accepted: epoch %d, %v", i, r.Epoch, rec)
		}
	}
}

func FuzzReadLiveCommittees(f *testing.F) {
	f.Add(historyAnswer(f, committeeRecordBytes(f, 5, 2, false), committeeRecordBytes(f, 6, 1, true)))
	f.Add([]byte{0x03, 0x08, 0x05, 0x10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadLiveCommittees(bytes.NewReader(data), 5, 2)
		checkHistoryAnswer(t, recs, err, 2, false)
	})
}

func FuzzReadCommitteeHistory(f *testing.F) {
	f.Add(historyAnswer(f, committeeRecordBytes(f, 5, 2, true), committeeRecordBytes(f, 6, 1, true)))
	f.Add(historyAnswer(f, committeeRecordBytes(f, 5, 1, false)))
	f.Add([]byte{0x03, 0x08, 0x05, 0x10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadCommitteeHistory(bytes.NewReader(data), 5, 4)
		checkHistoryAnswer(t, recs, err, 4, true)
	})
}
