package container

// Location helpers: the geohash a container advertises, the coarser
// prefixes it is found under, and region codes.

// geohashAlphabet is the standard geohash base32 alphabet (no a, i, l, o).
const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// MaxGeohashPrecision is the longest geohash EncodeGeohash produces and
// ValidGeohash accepts.
const MaxGeohashPrecision = 12

// Coordinate bounds in millionths of a degree.
const (
	minLatE6 = -90_000_000
	maxLatE6 = 90_000_000
	minLonE6 = -180_000_000
	maxLonE6 = 180_000_000
)

// PrefixPrecisions are the geohash lengths under which the network
// advertises a container, shortest first.
var PrefixPrecisions = []int{2, 3, 4}

// EncodeGeohash returns the standard base32 geohash of precision characters
// for a latitude and longitude given in millionths of a degree. It uses
// integer arithmetic only, so the result does not depend on floating-point
// rounding. A point on a cell boundary belongs to the cell to its north or
// east (each cell holds its south-west edges), except at the north pole and
// the antimeridian at +180, which fall in the last cell.
//
// Out-of-range inputs are clamped: latitude to [-90, 90] degrees, longitude
// to [-180, 180] degrees and precision to [1, MaxGeohashPrecision].
func EncodeGeohash(latE6, lonE6 int32, precision int) string {
	precision = min(max(precision, 1), MaxGeohashPrecision)
	lat := min(max(int64(latE6), minLatE6), maxLatE6)
	lon := min(max(int64(lonE6), minLonE6), maxLonE6)

	bits := 5 * precision
	lonBits := (bits + 1) / 2 // longitude takes the first, third, ... bit
	latBits := bits / 2
	lonQ := quantize(lon-minLonE6, maxLonE6-minLonE6, lonBits)
	latQ := quantize(lat-minLatE6, maxLatE6-minLatE6, latBits)

	out := make([]byte, precision)
	var ch byte
	for i := range bits {
		var bit uint64
		if i%2 == 0 {
			bit = lonQ >> (lonBits - 1 - i/2) & 1
		} else {
			bit = latQ >> (latBits - 1 - i/2) & 1
		}
		ch = ch<<1 | byte(bit)
		if i%5 == 4 {
			out[i/5] = geohashAlphabet[ch]
			ch = 0
		}
	}
	return string(out)
}

// quantize returns floor(offset / span * 2^n), capped at 2^n-1, which is
// the n bits that n bisections of [0, span] produce for offset. It needs
// 0 <= offset <= span < 2^29 and n <= 30 so that nothing overflows.
func quantize(offset, span int64, n int) uint64 {
	q := uint64(offset) << n / uint64(span)
	if top := uint64(1)<<n - 1; q > top {
		q = top
	}
	return q
}

// ValidGeohash reports whether s is a geohash EncodeGeohash could produce:
// 1 to MaxGeohashPrecision characters, all from the lowercase geohash
// alphabet.
func ValidGeohash(s string) bool {
	if len(s) == 0 || len(s) > MaxGeohashPrecision {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isGeohashChar(s[i]) {
			return false
		}
	}
	return true
}

func isGeohashChar(c byte) bool {
	switch {
	case c >= '0' && c <= '9':
		return true
	case c < 'b' || c > 'z':
		return false
	default:
		return c != 'i' && c != 'l' && c != 'o'
	}
}

// RegionPrefixes returns the prefixes of geohash at PrefixPrecisions,
// shortest first, leaving out those longer than geohash itself. It returns
// nil for an invalid geohash or one shorter than every precision.
func RegionPrefixes(geohash string) []string {
	if !ValidGeohash(geohash) {
		return nil
	}
	var out []string
	for _, p := range PrefixPrecisions {
		if p <= len(geohash) {
			out = append(out, geohash[:p])
		}
	}
	return out
}

// ValidRegion reports whether code is a region code: 2 to 32 characters of
// lowercase letters, digits and '-', starting with a letter ("eu-west",
// "us-east-1").
func ValidRegion(code string) bool {
	if len(code) < 2 || len(code) > 32 {
		return false
	}
	if c := code[0]; c < 'a' || c > 'z' {
		return false
	}
	for i := 1; i < len(code); i++ {
		c := code[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
