package indexer

import (
	"slices"
	"testing"
	"time"
)

func TestWarm(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix,
		recSpec{peer: "eu-cheap", profile: "t4", fee: 100_000, at: paris},
		recSpec{peer: "eu-fast", profile: "rtx4090", fee: 400_000, at: frankfurt},
		recSpec{peer: "eu-mid", profile: "l40s", fee: 300_000, at: london},
		recSpec{peer: "eu-busy", profile: "h100", fee: 50_000, at: paris, state: busy},
		recSpec{peer: "eu-other-app", profile: "t4", fee: 10_000, at: paris, apps: []string{"other"}},
		recSpec{peer: "us-cheap", region: "us-east", at: virginia, profile: "t4", fee: 100_000},
		recSpec{peer: "us-fast", region: "us-east", at: virginia, profile: "rtx4090", fee: 500_000},
	)
	if got := ix.Warm(t0, 0); got != nil {
		t.Fatalf("k 0: %v", got)
	}
	// k 1: per region, the best standby container of each ranking for each of the two most offered
	// apps: eu-west's "demo" (4 containers) and "other" (1).
	want := []string{"eu-cheap", "eu-fast", "eu-other-app", "us-cheap", "us-fast"}
	if got := peers(ix.Warm(t0, 1)); !slices.Equal(got, want) {
		t.Fatalf("warm %v, want %v", got, want)
	}
	// A held container (a reservation under way) is no longer likely: the next best takes its place.
	ix.Hold("eu-cheap", t0, t0.Add(time.Minute))
	got := peers(ix.Warm(t0, 1))
	if slices.Contains(got, "eu-cheap") || slices.Contains(got, "eu-busy") {
		t.Fatalf("warm %v holds a held or busy container", got)
	}
	if !slices.Contains(got, "eu-mid") {
		t.Fatalf("warm %v, want eu-mid, the next cheapest, in it", got)
	}
	// Every peer once, even when rankings agree.
	all := peers(ix.Warm(t0, 10))
	slices.Sort(all)
	if want := []string{"eu-fast", "eu-mid", "eu-other-app", "us-cheap", "us-fast"}; !slices.Equal(all, want) {
		t.Fatalf("warm k 10: %v, want %v", all, want)
	}
}
