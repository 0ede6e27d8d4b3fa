package consumer

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// fakeLookup serves provider lists and records from maps.
type fakeLookup struct {
	providers map[string][]string
	records   map[string]*pb.ContainerRecord
	failKey   string
}

func (f fakeLookup) FindProviders(_ context.Context, key string, _ int, found func(string)) error {
	if key == f.failKey {
		return errors.New("boom")
	}
	for _, id := range f.providers[key] {
		found(id)
	}
	return nil
}

func (f fakeLookup) ContainerRecord(_ context.Context, id string) (*pb.ContainerRecord, string, error) {
	if r, ok := f.records[id]; ok {
		return r, "fake:" + id, nil
	}
	return nil, "", errors.New("not found")
}

func rec(model, geohash string, fee uint64, state pb.ContainerState, apps ...string) *pb.ContainerRecord {
	hw := &pb.Hardware{}
	if model != "" {
		hw.Gpus = []*pb.GPU{{Model: model}}
	}
	return &pb.ContainerRecord{Hardware: hw, Location: &pb.Location{Geohash: geohash}, Apps: apps,
		SessionFeeMicros: fee, State: state}
}

const standby = pb.ContainerState_CONTAINER_STATE_STANDBY

func TestFindIntersectsFiltersAndSorts(t *testing.T) {
	lk := fakeLookup{
		providers: map[string][]string{
			"gpu:H100":   {"a", "b", "c", "liar", "gone"},
			"region:u33": {"a", "b", "liar", "gone", "x"},
			"app:demo":   {"a", "b", "c", "liar", "gone"},
		},
		records: map[string]*pb.ContainerRecord{
			"a":    rec("H100", "u33dc0", 300, standby, "demo"),
			"b":    rec("H100", "u33abc", 100, standby, "demo", "blender"),
			"c":    rec("H100", "u09tvw", 100, standby, "demo"),
			"liar": rec("T4", "u33dc0", 50, standby, "demo"), // provides gpu:H100 but its record says T4
		},
	}
	found, st, err := Find(context.Background(), lk, Query{GPU: "NVIDIA H100 80GB HBM3", Region: "U33", App: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range found {
		ids = append(ids, f.PeerID)
		if f.Source != "fake:"+f.PeerID {
			t.Errorf("%s: source %q, want the lookup's", f.PeerID, f.Source)
		}
	}
	if !slices.Equal(ids, []string{"b", "a"}) { // cheapest first
		t.Fatalf("found %v, want [b a]", ids)
	}
	if st.Providers != 4 || st.Missing != 1 || st.Filtered != 1 || st.Fetched != 3 {
		t.Fatalf("stats %+v", st)
	}
	if !slices.Equal(st.Keys, []string{"gpu:H100", "region:u33", "app:demo"}) {
		t.Fatalf("keys %v", st.Keys)
	}
}

func TestQueryKeys(t *testing.T) {
	for _, tc := range []struct {
		q    Query
		keys []string
		bad  bool
	}{
		{q: Query{GPU: "h100"}, keys: []string{"gpu:H100"}},
		{q: Query{GPU: "none"}, keys: []string{"gpu:" + container.CPUModel}},
		{q: Query{Region: "u33dc0"}, keys: []string{"region:u33d"}}, // asked at the longest advertised prefix
		{q: Query{App: "demo"}, keys: []string{"app:demo"}},
		{q: Query{}, bad: true},
		{q: Query{Region: "u"}, bad: true},
		{q: Query{Region: "a!"}, bad: true},
	} {
		keys, err := tc.q.Keys()
		if tc.bad {
			if !errors.Is(err, ErrQuery) {
				t.Errorf("%+v: err %v, want ErrQuery", tc.q, err)
			}
			continue
		}
		if err != nil || !slices.Equal(keys, tc.keys) {
			t.Errorf("%+v: keys %v err %v, want %v", tc.q, keys, err, tc.keys)
		}
	}
}

func TestMatchesStatesAndFee(t *testing.T) {
	r := rec("", "u09tvw", 250_000, pb.ContainerState_CONTAINER_STATE_LOCKED, "demo")
	if !(Query{GPU: "none"}).Matches(r) {
		t.Error("a CPU-only record should match gpu none")
	}
	if (Query{App: "demo", States: []pb.ContainerState{standby}}).Matches(r) {
		t.Error("a locked record matched a standby-only query")
	}
	if (Query{App: "demo", MaxFee: 200_000}).Matches(r) {
		t.Error("a record above the budget matched")
	}
	if !(Query{App: "demo", MaxFee: 250_000}).Matches(r) {
		t.Error("a record at the budget did not match")
	}
}

func TestFindProviderError(t *testing.T) {
	lk := fakeLookup{failKey: "app:demo"}
	if _, _, err := Find(context.Background(), lk, Query{App: "demo"}); err == nil {
		t.Fatal("a failing provider lookup must fail the query")
	}
}

// streamingLookup names one provider, then holds its lookup open until that provider's record has
// been asked for: Find must fetch records while the lookups are still running.
type streamingLookup struct {
	fetched chan string
}

func (s streamingLookup) FindProviders(ctx context.Context, key string, _ int, found func(string)) error {
	found("a")
	select {
	case id := <-s.fetched:
		if id != "a" {
			return errors.New("fetched the wrong record")
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	found("b")
	return nil
}

func (s streamingLookup) ContainerRecord(_ context.Context, id string) (*pb.ContainerRecord, string, error) {
	if id == "a" {
		s.fetched <- id
	}
	return rec("H100", "u33dc0", 100, standby, "demo"), "container", nil
}

func TestFindFetchesWhileLookingUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Without pipelining the lookup waits for a fetch that waits for the lookup: synctest
		// reports the deadlock.
		found, st, err := Find(t.Context(), streamingLookup{fetched: make(chan string)}, Query{App: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 2 || st.Providers != 2 || st.Fetched != 2 {
			t.Fatalf("found %d, stats %+v", len(found), st)
		}
	})
}

func TestFindFailingLookupStopsFetches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lk := fakeLookup{
			providers: map[string][]string{"gpu:H100": {"a"}},
			records:   map[string]*pb.ContainerRecord{"a": rec("H100", "u33dc0", 1, standby, "demo")},
			failKey:   "app:demo",
		}
		if _, _, err := Find(t.Context(), lk, Query{GPU: "H100", App: "demo"}); err == nil {
			t.Fatal("a failing provider lookup must fail the query")
		}
	})
}
