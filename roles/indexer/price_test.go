package indexer

import (
	"math"
	"testing"
)

func TestMultiplier(t *testing.T) {
	tests := []struct{ util, want uint32 }{
		{0, PPM}, {250_000, PPM}, {500_000, PPM}, {500_001, PPM + 2},
		{750_000, 1_500_000}, {900_000, 1_800_000}, {PPM, 2 * PPM}, {5 * PPM, 2 * PPM},
	}
	for _, tt := range tests {
		if got := Multiplier(tt.util); got != tt.want {
			t.Errorf("Multiplier(%d) = %d, want %d", tt.util, got, tt.want)
		}
	}
	if MaxMultiplierPPM != 2*PPM {
		t.Errorf("MaxMultiplierPPM = %d", MaxMultiplierPPM)
	}
}

func TestRetailPrice(t *testing.T) {
	tests := []struct {
		ask  uint64
		mult uint32
		want uint64
	}{
		{100_000, PPM, 100_000},
		{100_000, 1_500_000, 150_000},
		{3, 1_333_333, 3}, // 3.999999 rounds down
		{0, 2 * PPM, 0},
		{math.MaxUint64, 2 * PPM, math.MaxUint64}, // saturates
		{math.MaxUint64, PPM, math.MaxUint64},
		{math.MaxUint64 / 2, 2 * PPM, math.MaxUint64 - 1},
	}
	for _, tt := range tests {
		if got := RetailPrice(tt.ask, tt.mult); got != tt.want {
			t.Errorf("RetailPrice(%d, %d) = %d, want %d", tt.ask, tt.mult, got, tt.want)
		}
	}
}

func TestRollEpoch(t *testing.T) {
	d := newDemand()
	// Epoch 4: eu-west samples 0.4, 0.8, 0.9 (mean 0.7); us-east 0.2; ap none.
	for _, u := range []uint32{400_000, 800_000, 900_000} {
		d.sample("eu-west", u)
	}
	d.sample("us-east", 200_000)
	d.roll(5)
	if got := d.multiplier("eu-west"); got != 1_400_000 {
		t.Errorf("eu-west: %d, want 1.4x", got)
	}
	for _, r := range []string{"us-east", "ap-northeast"} {
		if got := d.multiplier(r); got != PPM {
			t.Errorf("%s: %d, want 1.0x", r, got)
		}
	}
	// Rolling the same epoch again, or an older one, changes nothing.
	d.sample("eu-west", 0)
	d.roll(5)
	d.roll(4)
	if got := d.multiplier("eu-west"); got != 1_400_000 {
		t.Errorf("after a repeated roll: %d", got)
	}
	// The next epoch uses the samples since the last roll only; a region that went quiet is 1.0x.
	d.roll(6)
	if got := d.multiplier("eu-west"); got != PPM {
		t.Errorf("epoch 6: %d, want 1.0x from the single 0 sample", got)
	}
	d.roll(7)
	if got := d.multiplier("eu-west"); got != PPM {
		t.Errorf("epoch 7 without samples: %d, want 1.0x", got)
	}
}

func TestSampleDemandUsesLatestTime(t *testing.T) {
	ix := NewIndex(Config{})
	put(ix, recSpec{peer: "a"}, recSpec{peer: "b"})
	ix.Hold("a", t0, t0.Add(UnitLength))
	ix.SampleDemand() // at t0, the latest time the index saw: a held, b free -> 0.5
	ix.Heartbeat("b", hb(2, busy), t0.Add(UnitLength))
	ix.SampleDemand() // hold lapsed, b busy -> 0.5
	ix.Heartbeat("a", hb(2, busy), t0.Add(UnitLength))
	ix.SampleDemand() // both busy -> 1.0
	ix.RollEpoch(1)   // mean 2/3
	if got := ix.Regions()["eu-west"].MultiplierPPM; got != 1_333_332 {
		t.Fatalf("multiplier %d, want 1333332", got)
	}
}
