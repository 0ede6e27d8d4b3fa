package indexer

// Geography: where a container or a consumer is, how far apart two places are, and the round trip
// that distance costs. docs/MATCHING.md explains the latency model.

import (
	"math"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
)

// The latency model: rtt_ms = AccessRTTms + distance_km / KmPerRTTms, rounded to the nearest
// millisecond. Light in fibre covers about 200 km per ms; routes run about 1.5 times longer than
// the great circle; the signal goes there and back: 200 / 1.5 / 2 = 66.7 km of great circle per
// millisecond of round trip. AccessRTTms covers the last mile at both ends.
const (
	AccessRTTms = 5
	KmPerRTTms  = 66.7
	// UnknownRTTms stands in for the round trip to a container whose distance cannot be estimated
	// (the consumer gave no location, or the container none that decodes) and that the consumer did
	// not measure. It is also the latency scale of the evaluation index when the request sets no
	// limit.
	UnknownRTTms = 250
)

// earthRadiusKm is the mean radius of the Earth (IUGG).
const earthRadiusKm = 6371.0088

const degToRad = math.Pi / 180

// vec is a unit vector: a place on the sphere for fast distances.
type vec struct{ x, y, z float64 }

// point is a place on the sphere: degrees for boxes and a unit vector for distances.
type point struct {
	lat, lon float64 // degrees
	v        vec
	ok       bool // false: the place is unknown
}

func newPoint(lat, lon float64) point {
	φ, λ := lat*degToRad, lon*degToRad
	cφ := math.Cos(φ)
	return point{lat: lat, lon: lon, v: vec{cφ * math.Cos(λ), cφ * math.Sin(λ), math.Sin(φ)}, ok: true}
}

// pointOf places a Location: its coordinates when it has valid ones, else the centre of its
// geohash, else nowhere (ok false).
func pointOf(loc *pb.Location) point {
	if loc == nil {
		return point{}
	}
	if loc.GetHasCoordinates() && validCoordinates(loc.GetLatitudeE6(), loc.GetLongitudeE6()) {
		return newPoint(float64(loc.GetLatitudeE6())/1e6, float64(loc.GetLongitudeE6())/1e6)
	}
	if lat, lon, ok := DecodeGeohash(loc.GetGeohash()); ok {
		return newPoint(lat, lon)
	}
	return point{}
}

func validCoordinates(latE6, lonE6 int32) bool {
	return latE6 >= -90_000_000 && latE6 <= 90_000_000 && lonE6 >= -180_000_000 && lonE6 <= 180_000_000
}

// GeohashBox decodes a geohash into the cell it names, in degrees. ok is false when s is not a
// geohash (see container.ValidGeohash).
func GeohashBox(s string) (minLat, minLon, maxLat, maxLon float64, ok bool) {
	if !container.ValidGeohash(s) {
		return 0, 0, 0, 0, false
	}
	minLat, maxLat, minLon, maxLon = -90, 90, -180, 180
	even := true // bits alternate, longitude first
	for i := 0; i < len(s); i++ {
		v := geohashValue(s[i])
		for b := 4; b >= 0; b-- {
			bit := v>>b&1 == 1
			if even {
				mid := (minLon + maxLon) / 2
				if bit {
					minLon = mid
				} else {
					maxLon = mid
				}
			} else {
				mid := (minLat + maxLat) / 2
				if bit {
					minLat = mid
				} else {
					maxLat = mid
				}
			}
			even = !even
		}
	}
	return minLat, minLon, maxLat, maxLon, true
}

// DecodeGeohash returns the centre of a geohash cell in degrees; ok is false when s is not a
// geohash. The centre is off the true place by at most half the cell: about 630 km for two
// characters, 20 km for four, 0.6 km for six.
func DecodeGeohash(s string) (lat, lon float64, ok bool) {
	minLat, minLon, maxLat, maxLon, ok := GeohashBox(s)
	if !ok {
		return 0, 0, false
	}
	return (minLat + maxLat) / 2, (minLon + maxLon) / 2, true
}

// geohashValue is the 5-bit value of a geohash character already known to be valid.
func geohashValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	// "0123456789bcdefghjkmnpqrstuvwxyz": letters from 'b' with i, l and o left out.
	v := c - 'b' + 10
	if c > 'i' {
		v--
	}
	if c > 'l' {
		v--
	}
	if c > 'o' {
		v--
	}
	return v
}

// chord2 is the squared straight-line distance between two points on the unit sphere; 0 to 4.
func chord2(a, b vec) float64 {
	dx, dy, dz := a.x-b.x, a.y-b.y, a.z-b.z
	return dx*dx + dy*dy + dz*dz
}

// kmOfChord2 turns a squared unit chord into a great-circle distance. With h = chord2/4 the
// haversine of the central angle, d = 2 R asin(sqrt(h)): the haversine formula, well conditioned
// at short range.
func kmOfChord2(c2 float64) float64 {
	return 2 * earthRadiusKm * math.Asin(min(math.Sqrt(c2)/2, 1))
}

// rttOfKm is the latency model: AccessRTTms + km / KmPerRTTms, rounded to the nearest ms (halves
// up).
func rttOfKm(km float64) uint32 {
	return AccessRTTms + uint32(math.Floor(km/KmPerRTTms+0.5))
}

// rttBounds[k] is the squared unit chord of the distance (k + 0.5) * KmPerRTTms: a place is at
// least AccessRTTms + k + 1 ms away exactly when its chord² reaches rttBounds[k]. The table turns
// a chord into a round trip without an arcsine, and a latency limit into one comparison.
var rttBounds = func() []float64 {
	var b []float64
	for k := 0; ; k++ {
		θ := (float64(k) + 0.5) * KmPerRTTms / earthRadiusKm
		if θ >= math.Pi {
			return b
		}
		c := 2 * math.Sin(θ/2)
		b = append(b, c*c)
	}
}()

// rttStart[i] is the number of rttBounds at or below (i / rttBuckets)²: where the count starts
// for a chord of length at least i / rttBuckets. Buckets are even in chord length, so most hold
// no bound or one.
const rttBuckets = 512

var rttStart = func() []uint16 {
	out := make([]uint16, 2*rttBuckets+1)
	for i := range out {
		edge := float64(i) / rttBuckets
		for int(out[i]) < len(rttBounds) && rttBounds[out[i]] <= edge*edge {
			out[i]++
		}
	}
	return out
}()

// rttOfChord2 is the latency model for a squared unit chord: AccessRTTms plus the number of
// rttBounds it reaches, found from its bucket in a step or two, without an arcsine.
func rttOfChord2(c2 float64) uint32 {
	i := min(max(int(math.Sqrt(c2)*rttBuckets), 0), len(rttStart)-1)
	k := int(rttStart[i])
	for k > 0 && c2 < rttBounds[k-1] { // a rounded square root may land a bucket high
		k--
	}
	for k < len(rttBounds) && c2 >= rttBounds[k] {
		k++
	}
	return AccessRTTms + uint32(k)
}

// DistanceKm is the great-circle distance between two locations (see pointOf for how a location
// is placed); ok is false when either cannot be placed.
func DistanceKm(a, b *pb.Location) (km float64, ok bool) {
	p1, p2 := pointOf(a), pointOf(b)
	if !p1.ok || !p2.ok {
		return 0, false
	}
	return kmOfChord2(chord2(p1.v, p2.v)), true
}

// EstimateRTT is the round trip the latency model predicts between two locations, in ms; ok is
// false when either cannot be placed.
func EstimateRTT(a, b *pb.Location) (ms uint32, ok bool) {
	p1, p2 := pointOf(a), pointOf(b)
	if !p1.ok || !p2.ok {
		return 0, false
	}
	return rttOfChord2(chord2(p1.v, p2.v)), true
}

// chordLimit2 is the squared chord from which a geographic estimate exceeds limitMs: rtt <= limit
// exactly when chord² < chordLimit2(limit). A value above 4 passes everything, -1 nothing.
func chordLimit2(limitMs uint32) float64 {
	switch k := int64(limitMs) - AccessRTTms; {
	case k < 0:
		return -1
	case k >= int64(len(rttBounds)):
		return 5
	default:
		return rttBounds[k]
	}
}

// box is the latitude/longitude bounding box of a shard's containers, in degrees. It may be larger
// than the points it holds (it grows at once and shrinks only when recomputed), never smaller.
type box struct {
	minLat, maxLat, minLon, maxLon float64
	n                              int // points added since the last reset; 0: empty
}

func (b *box) add(p point) {
	if !p.ok {
		return
	}
	if b.n == 0 {
		b.minLat, b.maxLat, b.minLon, b.maxLon = p.lat, p.lat, p.lon, p.lon
	} else {
		b.minLat, b.maxLat = min(b.minLat, p.lat), max(b.maxLat, p.lat)
		b.minLon, b.maxLon = min(b.minLon, p.lon), max(b.maxLon, p.lon)
	}
	b.n++
}

// minKm is the least great-circle distance from p to any point of the box; +Inf for an empty box.
//
// Inside the box's longitudes the nearest point lies on p's own meridian, |Δlat| away. Outside
// them, cos d = sin φ1 sin φ2 + cos φ1 cos φ2 cos Δλ falls as Δλ grows (0 to 180 degrees), so the
// nearest point lies on the box's nearer meridian edge, at the latitude φ2 that maximises
// A sin φ2 + B cos φ2 (A = sin φ1, B = cos φ1 cos Δλ): θ = atan2(A, B) when the box's latitudes
// hold it, else one of their ends.
func (b *box) minKm(p point) float64 {
	if b.n == 0 {
		return math.Inf(1)
	}
	dλ := lonGap(p.lon, b.minLon, b.maxLon)
	if dλ == 0 {
		switch {
		case p.lat < b.minLat:
			return (b.minLat - p.lat) * degToRad * earthRadiusKm
		case p.lat > b.maxLat:
			return (p.lat - b.maxLat) * degToRad * earthRadiusKm
		default:
			return 0
		}
	}
	φ1 := p.lat * degToRad
	A, B := math.Sin(φ1), math.Cos(φ1)*math.Cos(dλ*degToRad)
	lo, hi := b.minLat*degToRad, b.maxLat*degToRad
	f := func(φ2 float64) float64 { return A*math.Sin(φ2) + B*math.Cos(φ2) }
	best := max(f(lo), f(hi))
	if θ := math.Atan2(A, B); θ >= lo && θ <= hi {
		best = max(best, f(θ))
	}
	return earthRadiusKm * math.Acos(min(max(best, -1), 1))
}

// lonGap is the angle in degrees (0 to 180) from longitude lon to the nearer end of [lo, hi], or 0
// inside it.
func lonGap(lon, lo, hi float64) float64 {
	if lon >= lo && lon <= hi {
		return 0
	}
	return min(angDiff(lon, lo), angDiff(lon, hi))
}

func angDiff(a, b float64) float64 {
	d := math.Mod(math.Abs(a-b), 360)
	return min(d, 360-d)
}
