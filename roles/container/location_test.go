package container

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestEncodeGeohashKnownValues(t *testing.T) {
	tests := []struct {
		name      string
		lat, lon  int32
		precision int
		want      string
	}{
		{"Jutland reference point", 57_649_110, 10_407_440, 11, "u4pruydqqvj"},
		{"Paris", 48_856_600, 2_352_200, 6, "u09tvw"},
		{"Paris, one character", 48_856_600, 2_352_200, 1, "u"},
		{"south-west corner", minLatE6, minLonE6, 12, "000000000000"},
		{"north-east corner", maxLatE6, maxLonE6, 12, "zzzzzzzzzzzz"},
		{"origin belongs to the north-east cell", 0, 0, 5, "s0000"},
		{"just south-west of the origin", -1, -1, 3, "7zz"},
		// Out-of-range inputs are clamped.
		{"latitude beyond the pole", 95_000_000, 190_000_000, 4, "zzzz"},
		{"precision below one", 48_856_600, 2_352_200, 0, "u"},
		{"precision above twelve", minLatE6, minLonE6, 20, "000000000000"},
	}
	for _, tt := range tests {
		if got := EncodeGeohash(tt.lat, tt.lon, tt.precision); got != tt.want {
			t.Errorf("%s: EncodeGeohash(%d, %d, %d) = %q; want %q", tt.name, tt.lat, tt.lon, tt.precision, got, tt.want)
		}
	}
}

// naiveGeohash encodes by literal interval bisection, the way the geohash
// algorithm is usually described. Coordinates are scaled by 2^31 so every
// midpoint of up to 30 bisections is an exact integer. It assumes in-range
// inputs and a precision in [1, 12].
func naiveGeohash(latE6, lonE6 int32, precision int) string {
	const scale = 31
	lat, lon := int64(latE6)<<scale, int64(lonE6)<<scale
	latLo, latHi := int64(minLatE6)<<scale, int64(maxLatE6)<<scale
	lonLo, lonHi := int64(minLonE6)<<scale, int64(maxLonE6)<<scale
	var sb strings.Builder
	var ch, n int
	for i := range 5 * precision {
		bit := 0
		if i%2 == 0 {
			if mid := (lonLo + lonHi) / 2; lon >= mid {
				bit, lonLo = 1, mid
			} else {
				lonHi = mid
			}
		} else {
			if mid := (latLo + latHi) / 2; lat >= mid {
				bit, latLo = 1, mid
			} else {
				latHi = mid
			}
		}
		ch, n = ch<<1|bit, n+1
		if n == 5 {
			sb.WriteByte(geohashAlphabet[ch])
			ch, n = 0, 0
		}
	}
	return sb.String()
}

func TestEncodeGeohashMatchesBisection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(lat, lon int32, p int) {
		t.Helper()
		if got, want := EncodeGeohash(lat, lon, p), naiveGeohash(lat, lon, p); got != want {
			t.Fatalf("EncodeGeohash(%d, %d, %d) = %q; bisection gives %q", lat, lon, p, got, want)
		}
	}
	// Cell boundaries are where the two could disagree.
	for _, lat := range []int32{minLatE6, -45_000_000, -1, 0, 1, 45_000_000, 89_999_999} {
		for _, lon := range []int32{minLonE6, -90_000_000, -1, 0, 1, 90_000_000, 179_999_999} {
			for p := 1; p <= MaxGeohashPrecision; p++ {
				check(lat, lon, p)
			}
		}
	}
	for range 10_000 {
		lat := int32(rng.IntN(maxLatE6-minLatE6)) + minLatE6
		lon := int32(rng.IntN(maxLonE6-minLonE6)) + minLonE6
		check(lat, lon, 1+rng.IntN(MaxGeohashPrecision))
	}
}

func TestEncodeGeohashPrefixesNest(t *testing.T) {
	full := EncodeGeohash(48_856_600, 2_352_200, MaxGeohashPrecision)
	for p := 1; p <= MaxGeohashPrecision; p++ {
		if got := EncodeGeohash(48_856_600, 2_352_200, p); got != full[:p] {
			t.Errorf("precision %d gives %q; want prefix %q of %q", p, got, full[:p], full)
		}
	}
}

func FuzzEncodeGeohash(f *testing.F) {
	f.Add(int32(57_649_110), int32(10_407_440), 11)
	f.Add(int32(0), int32(0), 1)
	f.Add(int32(maxLatE6), int32(maxLonE6), 12)
	f.Add(int32(-2147483648), int32(2147483647), -5)
	f.Fuzz(func(t *testing.T, lat, lon int32, precision int) {
		got := EncodeGeohash(lat, lon, precision) // must not panic for any input
		if !ValidGeohash(got) {
			t.Fatalf("EncodeGeohash(%d, %d, %d) = %q, not a valid geohash", lat, lon, precision, got)
		}
		inRange := lat >= minLatE6 && lat <= maxLatE6 && lon >= minLonE6 && lon <= maxLonE6 &&
			precision >= 1 && precision <= MaxGeohashPrecision
		if !inRange {
			return
		}
		if len(got) != precision {
			t.Fatalf("EncodeGeohash(%d, %d, %d) = %q; want %d characters", lat, lon, precision, got, precision)
		}
		if want := naiveGeohash(lat, lon, precision); got != want {
			t.Fatalf("EncodeGeohash(%d, %d, %d) = %q; bisection gives %q", lat, lon, precision, got, want)
		}
	})
}

func TestValidGeohash(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"u", true},
		{"u09tvw", true},
		{"0123456789bc", true},
		{"defghjkmnpqr", true},
		{"stuvwxyz", true},
		{"", false},
		{"u09tvw0000000", false}, // 13 characters
		{"U09TVW", false},        // uppercase
		{"u09a", false},          // a, i, l and o are not in the alphabet
		{"u09i", false},
		{"u09l", false},
		{"u09o", false},
		{"u09 ", false},
		{"u0-9", false},
		{"u09\x00", false},
		{"ü", false},
	}
	for _, tt := range tests {
		if got := ValidGeohash(tt.s); got != tt.want {
			t.Errorf("ValidGeohash(%q) = %v; want %v", tt.s, got, tt.want)
		}
	}
	for i := 0; i < len(geohashAlphabet); i++ {
		if !ValidGeohash(geohashAlphabet[i : i+1]) {
			t.Errorf("ValidGeohash(%q) = false for a character of the alphabet", geohashAlphabet[i])
		}
	}
}

func TestRegionPrefixes(t *testing.T) {
	tests := []struct {
		geohash string
		want    []string
	}{
		{"u09tvw", []string{"u0", "u09", "u09t"}},
		{"u4pruydqqvj", []string{"u4", "u4p", "u4pr"}},
		{"u09t", []string{"u0", "u09", "u09t"}},
		{"u09", []string{"u0", "u09"}},
		{"u0", []string{"u0"}},
		{"u", nil},
		{"", nil},
		{"U09TVW", nil},
		{"u09tvw0000000", nil},
	}
	for _, tt := range tests {
		if got := RegionPrefixes(tt.geohash); !slices.Equal(got, tt.want) {
			t.Errorf("RegionPrefixes(%q) = %q; want %q", tt.geohash, got, tt.want)
		}
	}
	if !slices.Equal(PrefixPrecisions, []int{2, 3, 4}) {
		t.Errorf("PrefixPrecisions = %v; the network advertises 2, 3 and 4", PrefixPrecisions)
	}
}

func TestValidRegion(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"eu-west", true},
		{"us-east-1", true},
		{"ap", true},
		{"a1", true},
		{strings.Repeat("a", 32), true},
		{"", false},
		{"e", false},
		{strings.Repeat("a", 33), false},
		{"1eu", false},
		{"-eu", false},
		{"EU-West", false},
		{"eu_west", false},
		{"eu west", false},
		{"eu.west", false},
		{"eu-wést", false},
	}
	for _, tt := range tests {
		if got := ValidRegion(tt.code); got != tt.want {
			t.Errorf("ValidRegion(%q) = %v; want %v", tt.code, got, tt.want)
		}
	}
}
