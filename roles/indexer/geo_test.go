package indexer

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

func TestDecodeGeohash(t *testing.T) {
	lat, lon, ok := DecodeGeohash("u09tvw")
	if !ok || math.Abs(lat-48.858) > 0.01 || math.Abs(lon-2.35) > 0.01 {
		t.Fatalf("u09tvw = %v, %v, %v; want Paris", lat, lon, ok)
	}
	for _, bad := range []string{"", "u09a", "U09", "0123456789bcd"} {
		if _, _, ok := DecodeGeohash(bad); ok {
			t.Errorf("DecodeGeohash(%q) ok", bad)
		}
	}
	// Round trip through roles/container's encoder: the centre of a cell encodes to the cell.
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		latE6, lonE6 := int32(r.IntN(180_000_001)-90_000_000), int32(r.IntN(360_000_001)-180_000_000)
		n := 1 + r.IntN(container.MaxGeohashPrecision)
		h := container.EncodeGeohash(latE6, lonE6, n)
		minLat, minLon, maxLat, maxLon, ok := GeohashBox(h)
		if !ok {
			t.Fatalf("GeohashBox(%q) failed", h)
		}
		lat, lon := float64(latE6)/1e6, float64(lonE6)/1e6
		if lat < minLat-1e-9 || lat > maxLat+1e-9 || lon < minLon-1e-9 || lon > maxLon+1e-9 {
			t.Fatalf("%v,%v encodes to %q but lies outside its box [%v,%v]x[%v,%v]", lat, lon, h, minLat, maxLat, minLon, maxLon)
		}
		cLat, cLon, _ := DecodeGeohash(h)
		if got := container.EncodeGeohash(int32(math.Round(cLat*1e6)), int32(math.Round(cLon*1e6)), n); n <= 8 && got != h {
			t.Fatalf("centre of %q encodes to %q", h, got)
		}
	}
}

func TestDistanceAndRTT(t *testing.T) {
	tests := []struct {
		name    string
		a, b    [2]float64
		km, tol float64
		rttMs   uint32
	}{
		{"same place", paris, paris, 0, 0.001, 5},
		{"Paris-London", paris, london, 343.5, 2, 10},
		{"Paris-Frankfurt", paris, frankfurt, 479, 3, 12},
		{"Paris-Virginia", paris, virginia, 6160, 20, 97},
		{"Paris-Tokyo", paris, tokyo, 9712, 20, 151},
		{"antipodes", [2]float64{0, 0}, [2]float64{0, 180}, math.Pi * earthRadiusKm, 0.01, 305},
	}
	for _, tt := range tests {
		km, ok := DistanceKm(loc("", tt.a), loc("", tt.b))
		if !ok || math.Abs(km-tt.km) > tt.tol {
			t.Errorf("%s: %.1f km, want %.1f", tt.name, km, tt.km)
		}
		if ms, _ := EstimateRTT(loc("", tt.a), loc("", tt.b)); ms != tt.rttMs {
			t.Errorf("%s: rtt %d ms, want %d", tt.name, ms, tt.rttMs)
		}
	}
	// rtt = 5 + km / 66.7, rounded.
	for _, c := range []struct {
		km float64
		ms uint32
	}{{0, 5}, {33.3, 5}, {33.35, 6}, {33.4, 6}, {667, 15}, {6670, 105}} {
		if got := rttOfKm(c.km); got != c.ms {
			t.Errorf("rttOfKm(%v) = %d, want %d", c.km, got, c.ms)
		}
	}
	// A location without coordinates falls back to its geohash; without either it cannot be placed.
	if _, ok := EstimateRTT(&pb.Location{Geohash: "u09"}, &pb.Location{Region: "eu-west"}); ok {
		t.Error("a region alone was placed")
	}
	if ms, ok := EstimateRTT(&pb.Location{Geohash: "u09tvw"}, loc("", paris)); !ok || ms != 5 {
		t.Errorf("geohash centre: %d ms %v", ms, ok)
	}
}

// TestRTTOfChord: the table-driven round trip equals the formula 5 + round(km / 66.7), and a
// latency limit's chord is exact.
func TestRTTOfChord(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		var c2 float64
		switch i % 3 {
		case 0:
			c2 = 4 * r.Float64()
		case 1:
			c2 = 0.1 * r.Float64() // within about 2000 km
		default:
			a := newPoint(r.Float64()*180-90, r.Float64()*360-180)
			b := newPoint(r.Float64()*180-90, r.Float64()*360-180)
			c2 = chord2(a.v, b.v)
		}
		got := rttOfChord2(c2)
		x := kmOfChord2(c2) / KmPerRTTms
		if frac := x - math.Floor(x); math.Abs(frac-0.5) > 1e-9 {
			if want := rttOfKm(kmOfChord2(c2)); got != want {
				t.Fatalf("chord² %v (%.3f km): rtt %d, want %d", c2, kmOfChord2(c2), got, want)
			}
		}
		for _, limit := range []uint32{got, got + 1, max(got, 1) - 1, 0, 4, 5, 400} {
			if (got <= limit) != (c2 < chordLimit2(limit)) {
				t.Fatalf("chord² %v: rtt %d, limit %d, chordLimit2 %v disagree", c2, got, limit, chordLimit2(limit))
			}
		}
	}
	if got := rttOfChord2(4); got != 305 {
		t.Errorf("antipodes: %d ms, want 305", got)
	}
}

// TestBoxMinKm: the box's distance is a lower bound of the distance to each point in it, and
// tight: some point of the box is that far.
func TestBoxMinKm(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		var b box
		lat0, lon0 := r.Float64()*160-80, r.Float64()*340-170
		var pts []point
		for range 1 + r.IntN(5) {
			p := newPoint(min(max(lat0+r.NormFloat64()*10, -90), 90), min(max(lon0+r.NormFloat64()*20, -180), 180))
			b.add(p)
			pts = append(pts, p)
		}
		q := newPoint(r.Float64()*180-90, r.Float64()*360-180)
		bound := b.minKm(q)
		for _, p := range pts {
			if d := kmOfChord2(chord2(q.v, p.v)); d < bound-1e-6 {
				t.Fatalf("point %v at %.3f km, below the box bound %.3f", p, d, bound)
			}
		}
		// Tightness on a grid over the box.
		best := math.Inf(1)
		for i := 0; i <= 60; i++ {
			for j := 0; j <= 60; j++ {
				p := newPoint(b.minLat+(b.maxLat-b.minLat)*float64(i)/60, b.minLon+(b.maxLon-b.minLon)*float64(j)/60)
				best = min(best, kmOfChord2(chord2(q.v, p.v)))
			}
		}
		grid := 111 * ((b.maxLat-b.minLat)/60 + (b.maxLon-b.minLon)/60) // km between grid points, at most
		if best < bound-1e-6 || best-bound > grid+1e-3 {
			t.Fatalf("box [%v,%v]x[%v,%v] from %v: bound %.1f km, grid minimum %.1f", b.minLat, b.maxLat, b.minLon, b.maxLon, q, bound, best)
		}
	}
	var empty box
	if !math.IsInf(empty.minKm(newPoint(0, 0)), 1) {
		t.Error("an empty box must be infinitely far")
	}
}
