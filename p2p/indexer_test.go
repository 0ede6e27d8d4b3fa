package p2p

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// testTicket is a ticket of id for epoch e as a winner makes it (the p2p layer does not check the
// proof, so its bytes are arbitrary).
func testTicket(id peer.ID, e uint64) *pb.IndexerTicket {
	return &pb.IndexerTicket{
		PeerId:       []byte(id),
		Epoch:        e,
		Role:         "indexer",
		VrfProof:     bytes.Repeat([]byte{0xa5}, 80),
		Seats:        1,
		Stake:        []byte{0x0d, 0xe0, 0xb6, 0xb3, 0xa7, 0x64, 0x00, 0x00}, // 1e18
		QualityPpm:   900_000,
		Seed:         bytes.Repeat([]byte{0x5e}, 32),
		IssuedUnixMs: testEpoch.UnixMilli(),
		Addrs:        [][]byte{[]byte("/ip4/203.0.113.7/tcp/4001")},
	}
}

func sealTicket(tb testing.TB, tk *pb.IndexerTicket, key crypto.PrivKey) []byte {
	tb.Helper()
	data, err := Seal(KindIndexerTicket, tk, key)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// signedTickets returns the sealed tickets of epoch e of n peers, sorted by peer ID.
func signedTickets(tb testing.TB, e uint64, n int) [][]byte {
	tb.Helper()
	type signed struct {
		id  peer.ID
		raw []byte
	}
	var all []signed
	for i := range n {
		key, id := testKey(tb, int64(100+i))
		all = append(all, signed{id, sealTicket(tb, testTicket(id, e), key)})
	}
	slices.SortFunc(all, func(a, b signed) int { return strings.Compare(string(a.id), string(b.id)) })
	out := make([][]byte, n)
	for i, s := range all {
		out[i] = s.raw
	}
	return out
}

func committeeRecord(tb testing.TB, e uint64, sealed bool, tickets [][]byte) []byte {
	tb.Helper()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CommitteeRecord{Epoch: e, Sealed: sealed, Tickets: tickets})
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestOpenIndexerTicket(t *testing.T) {
	keyA, idA := testKey(t, 1)
	_, idB := testKey(t, 2)
	valid := sealTicket(t, testTicket(idA, 7), keyA)
	tk, signer, err := OpenIndexerTicket(valid)
	if err != nil {
		t.Fatal(err)
	}
	if signer != idA || tk.Epoch != 7 || tk.Seats != 1 || len(tk.VrfProof) != 80 || len(tk.Addrs) != 1 {
		t.Fatalf("OpenIndexerTicket = %v, %s", tk, signer)
	}

	big := testTicket(idA, 7)
	big.Addrs = [][]byte{make([]byte, MaxTicketSize)}
	badPeer := testTicket(idA, 7)
	badPeer.PeerId = []byte("not a peer id")
	otherDomain, err := Seal(Kind{Domain: KindHeartbeat.Domain, Codec: KindIndexerTicket.Codec}, testTicket(idA, 7), keyA)
	if err != nil {
		t.Fatal(err)
	}
	forged := testTicket(idA, 7)
	forged.Seats = 9
	forgedPayload, err := proto.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"oversize envelope", sealTicket(t, big, keyA), errOversize},
		{"oversize junk", make([]byte, MaxTicketSize+1), errOversize},
		{"a heartbeat", sealHeartbeat(t, testHeartbeat(idA, 1, testEpoch), keyA), ErrSignature},
		{"signed in another domain", otherDomain, ErrSignature},
		{"payload changed after signing", reseal(t, valid, forgedPayload, nil), ErrSignature},
		{"names another peer", sealTicket(t, testTicket(idB, 7), keyA), ErrMalformed},
		{"names no peer", sealTicket(t, badPeer, keyA), ErrMalformed},
		{"truncated", valid[:len(valid)-1], ErrMalformed},
		{"empty", nil, ErrMalformed},
	} {
		tk, signer, err := OpenIndexerTicket(tc.data)
		if !errors.Is(err, tc.want) || tk != nil || signer != "" {
			t.Errorf("%s: OpenIndexerTicket = %v, %q, %v; want error %v", tc.name, tk, signer, err, tc.want)
		}
	}
}

func TestOpenCommitteeRecord(t *testing.T) {
	tickets := signedTickets(t, 7, 3)
	key := CommitteeKey(7)
	if key != "/rm-committee/7" {
		t.Fatalf("CommitteeKey(7) = %q", key)
	}
	e, rec, opened, err := OpenCommitteeRecord(key, committeeRecord(t, 7, true, tickets))
	if err != nil {
		t.Fatal(err)
	}
	if e != 7 || !rec.Sealed || len(opened) != 3 {
		t.Fatalf("epoch %d, sealed %v, %d tickets", e, rec.Sealed, len(opened))
	}
	for i, o := range opened {
		if peer.ID(o.Msg.PeerId) != o.Signer || !bytes.Equal(o.Raw, tickets[i]) || o.Msg.Epoch != 7 {
			t.Errorf("ticket %d: %v signed by %s", i, o.Msg, o.Signer)
		}
	}
	if _, _, opened, err := OpenCommitteeRecord(CommitteeKey(0), committeeRecord(t, 0, false, nil)); err != nil || len(opened) != 0 {
		t.Errorf("empty record of epoch 0: %d tickets, %v", len(opened), err)
	}

	key8, id8 := testKey(t, 8)
	other := sealTicket(t, testTicket(id8, 6), key8)
	reversed := slices.Clone(tickets)
	slices.Reverse(reversed)
	many := make([][]byte, MaxCommitteeTickets+1)
	for i := range many {
		many[i] = tickets[0]
	}
	bigTicket := testTicket(id8, 7)
	bigTicket.Addrs = [][]byte{make([]byte, MaxTicketSize)}
	for _, tc := range []struct {
		name, key string
		value     []byte
		why       string
	}{
		{"another namespace", "/pk/7", committeeRecord(t, 7, true, tickets), "key"},
		{"no leading slash", "rm-committee/7", committeeRecord(t, 7, true, tickets), "key"},
		{"no epoch", "/rm-committee/", committeeRecord(t, 7, true, tickets), "epoch"},
		{"leading zero", "/rm-committee/07", committeeRecord(t, 7, true, tickets), "epoch"},
		{"sign", "/rm-committee/+7", committeeRecord(t, 7, true, tickets), "epoch"},
		{"overflow", "/rm-committee/18446744073709551616", committeeRecord(t, 7, true, tickets), "epoch"},
		{"trailing path", "/rm-committee/7/x", committeeRecord(t, 7, true, tickets), "epoch"},
		{"record of another epoch", CommitteeKey(8), committeeRecord(t, 7, true, tickets), "epoch 7 under the key of epoch 8"},
		{"ticket of another epoch", key, committeeRecord(t, 7, true, append(slices.Clone(tickets), other)), "for epoch 6"},
		{"unsorted", key, committeeRecord(t, 7, true, reversed), "sorted"},
		{"duplicate", key, committeeRecord(t, 7, true, [][]byte{tickets[0], tickets[1], tickets[1]}), "sorted"},
		{"too many tickets", key, committeeRecord(t, 7, true, many), "limit 256"},
		{"oversize", key, make([]byte, MaxCommitteeRecordSize+1), "limit"},
		{"oversize ticket", key, committeeRecord(t, 7, true, [][]byte{sealTicket(t, bigTicket, key8)}), "ticket 0"},
		{"forged ticket", key, committeeRecord(t, 7, true, [][]byte{reseal(t, tickets[0], nil, key8.GetPublic())}), "ticket 0"},
		{"junk ticket", key, committeeRecord(t, 7, true, [][]byte{tickets[0], []byte("junk")}), "ticket 1"},
		{"not protobuf", key, []byte{0xff, 0xff}, "committee record"},
	} {
		e, rec, opened, err := OpenCommitteeRecord(tc.key, tc.value)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: error %v, want a malformed record (%q)", tc.name, err, tc.why)
		}
		if e != 0 || rec != nil || opened != nil {
			t.Errorf("%s: results returned with an error", tc.name)
		}
		var v CommitteeValidator
		if v.Validate(tc.key, tc.value) == nil {
			t.Errorf("%s: Validate accepts it", tc.name)
		}
	}
}

func TestCommitteeValidatorCheck(t *testing.T) {
	tickets := signedTickets(t, 7, 3)
	key, value := CommitteeKey(7), committeeRecord(t, 7, true, tickets)
	var v CommitteeValidator
	if err := v.Validate(key, value); err != nil {
		t.Fatalf("without a check: %v", err)
	}
	errBad := errors.New("bad seats")
	var gotEpoch uint64
	var gotTickets []OpenedTicket
	v.SetCheck(func(e uint64, ts []OpenedTicket) error {
		gotEpoch, gotTickets = e, ts
		return errBad
	})
	err := v.Validate(key, value)
	if !errors.Is(err, errBad) || !strings.Contains(err.Error(), "epoch 7") {
		t.Fatalf("Validate with a failing check = %v, want it wrapped", err)
	}
	if gotEpoch != 7 || len(gotTickets) != 3 || !bytes.Equal(gotTickets[2].Raw, tickets[2]) {
		t.Fatalf("check got epoch %d and %d tickets", gotEpoch, len(gotTickets))
	}
	if _, err := v.Select(key, [][]byte{value}); err == nil {
		t.Error("Select picked a record the check rejects")
	}
	v.SetCheck(func(uint64, []OpenedTicket) error { return nil })
	if err := v.Validate(key, value); err != nil {
		t.Fatalf("with a passing check: %v", err)
	}
	v.SetCheck(nil)
	if err := v.Validate(key, value); err != nil {
		t.Fatalf("check removed: %v", err)
	}
}

func TestCommitteeValidatorSelect(t *testing.T) {
	tickets := signedTickets(t, 7, 4)
	key := CommitteeKey(7)
	rec := func(sealed bool, n int) []byte { return committeeRecord(t, 7, sealed, tickets[:n]) }
	junk := []byte("junk")
	for _, tc := range []struct {
		name   string
		values [][]byte
		want   int
	}{
		{"sealed beats more tickets", [][]byte{junk, rec(false, 4), rec(true, 1), rec(false, 3)}, 2},
		{"then more tickets", [][]byte{rec(true, 1), rec(true, 3), rec(true, 2), rec(false, 4)}, 1},
		{"among unsealed too", [][]byte{rec(false, 1), rec(false, 2), junk}, 1},
		{"first of equals", [][]byte{rec(true, 2), rec(true, 2)}, 0},
		{"an invalid record never wins", [][]byte{rec(true, 1), committeeRecord(t, 7, true, [][]byte{tickets[1], tickets[0]})}, 0},
		{"one", [][]byte{rec(false, 0)}, 0},
	} {
		var v CommitteeValidator
		if got, err := v.Select(key, tc.values); err != nil || got != tc.want {
			t.Errorf("%s: Select = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	var v CommitteeValidator
	if _, err := v.Select(key, [][]byte{junk, committeeRecord(t, 8, true, nil)}); err == nil {
		t.Error("Select picked from invalid records")
	}
	if _, err := v.Select(key, nil); err == nil {
		t.Error("Select picked from nothing")
	}
	// The deep check counts: a record it rejects loses even when sealed and larger.
	rejected := string(tickets[3])
	v.SetCheck(func(_ uint64, ts []OpenedTicket) error {
		for _, tk := range ts {
			if string(tk.Raw) == rejected {
				return errors.New("losing ticket")
			}
		}
		return nil
	})
	if got, err := v.Select(key, [][]byte{rec(true, 4), rec(false, 2), rec(true, 3)}); err != nil || got != 2 {
		t.Errorf("Select with a check = %d, %v; want 2", got, err)
	}
}

func FuzzOpenIndexerTicket(f *testing.F) {
	key, id := testKey(f, 1)
	_, other := testKey(f, 2)
	valid := sealTicket(f, testTicket(id, 7), key)
	f.Add(valid)
	f.Add(sealTicket(f, testTicket(other, 7), key))
	f.Add(sealTicket(f, &pb.IndexerTicket{PeerId: []byte(id)}, key))
	f.Add(sealHeartbeat(f, testHeartbeat(id, 1, testEpoch), key))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, signer, err := OpenIndexerTicket(data)
		if err != nil {
			if !errors.Is(err, ErrEnvelope) && !errors.Is(err, errOversize) {
				t.Fatalf("error %v is neither an envelope error nor oversize", err)
			}
			if tk != nil || signer != "" {
				t.Fatal("results returned with an error")
			}
			return
		}
		if len(data) > MaxTicketSize || peer.ID(tk.PeerId) != signer {
			t.Fatalf("accepted %d bytes: ticket %v signed by %s", len(data), tk, signer)
		}
	})
}

func FuzzOpenCommitteeRecord(f *testing.F) {
	tickets := signedTickets(f, 7, 3)
	valid := committeeRecord(f, 7, true, tickets)
	f.Add(CommitteeKey(7), valid)
	f.Add(CommitteeKey(7), committeeRecord(f, 7, false, tickets[:1]))
	f.Add(CommitteeKey(7), committeeRecord(f, 7, true, [][]byte{tickets[1], tickets[0]}))
	f.Add(CommitteeKey(8), valid)
	f.Add("/rm-committee/07", valid)
	f.Add(CommitteeKey(7), valid[:len(valid)-5])
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		e, rec, opened, err := OpenCommitteeRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || rec != nil || opened != nil {
				t.Fatalf("error %v with results %v, %d tickets", err, rec, len(opened))
			}
			return
		}
		if CommitteeKey(e) != key || rec.Epoch != e || len(value) > MaxCommitteeRecordSize || len(opened) > MaxCommitteeTickets {
			t.Fatalf("accepted record %v under %q", rec, key)
		}
		for i, o := range opened {
			if o.Msg.Epoch != e || peer.ID(o.Msg.PeerId) != o.Signer || (i > 0 && bytes.Compare(o.Msg.PeerId, opened[i-1].Msg.PeerId) <= 0) {
				t.Fatalf("accepted ticket %d: %v signed by %s", i, o.Msg, o.Signer)
			}
		}
		var v CommitteeValidator
		if i, err := v.Select(key, [][]byte{[]byte("junk"), value}); i != 1 || err != nil {
			t.Fatalf("Select = %d, %v for a record OpenCommitteeRecord accepts", i, err)
		}
	})
}

// The validator remembers what it made of a record's bytes, and of nothing else: the same bytes
// under another key, or one byte changed, are opened afresh, and a record once rejected stays so.
func TestCommitteeValidatorRemembers(t *testing.T) {
	tickets := signedTickets(t, 7, 3)
	key, value := CommitteeKey(7), committeeRecord(t, 7, true, tickets)
	var v CommitteeValidator
	for range 3 {
		if err := v.Validate(key, value); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Validate(CommitteeKey(8), value); err == nil {
		t.Error("the same bytes under another epoch's key were accepted")
	}
	other, _ := testKey(t, 9)
	forged := committeeRecord(t, 7, true, [][]byte{tickets[0], tickets[1], reseal(t, tickets[2], nil, other.GetPublic())})
	for range 2 {
		if err := v.Validate(key, forged); !errors.Is(err, ErrMalformed) {
			t.Errorf("forged record: %v", err)
		}
	}
	_, rec, opened, err := v.open(key, value)
	if err != nil || !rec.Sealed || len(opened) != 3 {
		t.Fatalf("open: sealed %v, %d tickets, %v", rec.Sealed, len(opened), err)
	}
	if got := v.opened.Len(); got != 3 {
		t.Errorf("%d records remembered, want 3 (the record, under two keys, and the forged one)", got)
	}
	for i := range 2 * committeeCacheSize {
		v.Validate(CommitteeKey(uint64(100+i)), value)
	}
	if got := v.opened.Len(); got != committeeCacheSize {
		t.Errorf("%d records remembered, bound %d", got, committeeCacheSize)
	}
}

// BenchmarkCommitteePut is what a node does with a committee record (16 tickets) put to it that
// it already holds: validate it, then select between it and the record held. "fresh" opens both
// every time, as the validator did before it remembered them.
func BenchmarkCommitteePut(b *testing.B) {
	tickets := signedTickets(b, 7, 16)
	key, value := CommitteeKey(7), committeeRecord(b, 7, true, tickets)
	held := slices.Clone(value)
	for _, fresh := range []bool{false, true} {
		b.Run(map[bool]string{false: "remembered", true: "fresh"}[fresh], func(b *testing.B) {
			v := new(CommitteeValidator)
			for b.Loop() {
				if fresh {
					v = new(CommitteeValidator)
				}
				if err := v.Validate(key, value); err != nil {
					b.Fatal(err)
				}
				if _, err := v.Select(key, [][]byte{value, held}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
