package simnet

import (
	"fmt"
	"math"
	"net"
	"time"
)

// Region is a place peers live in: a region code as containers advertise it and a geohash there.
type Region struct {
	Name    string  `toml:"name"`
	Geohash string  `toml:"geohash"`
	Weight  float64 `toml:"weight"` // share of peers, relative to the other regions
}

// Topology is the simulated Internet: regions with a round-trip matrix, each peer's access link
// (bandwidth and last-mile delay) and packet loss.
type Topology struct {
	Regions []Region `toml:"regions"`
	// RTTms[i][j] is the round trip between regions i and j in milliseconds; the diagonal is the
	// round trip inside a region. A pair of peers deviates from its regions' figure by up to
	// ±PairJitter (a fixed share per pair, drawn from the seed), plus both access delays.
	RTTms      [][]float64 `toml:"rtt_ms"`
	PairJitter float64     `toml:"pair_jitter"`
	// AccessMbps lists access bandwidths (symmetric, megabits per second), drawn per peer with
	// AccessWeights.
	AccessMbps    []int     `toml:"access_mbps"`
	AccessWeights []float64 `toml:"access_weights"`
	// AccessDelayMs bounds the one-way last-mile delay drawn per peer: [min, max].
	AccessDelayMs [2]float64 `toml:"access_delay_ms"`
	// Loss is the probability that a packet is lost, per packet, in each direction.
	Loss float64 `toml:"loss"`
	// TickMs is the stream link model's delivery grid: a write arrives, and a dial completes, at
	// its exact time rounded up to a multiple of TickMs milliseconds (0: exact). Events that fall
	// in one tick then happen at one simulated instant, and the bubble runs what they wake in
	// parallel. The QUIC model ignores it.
	TickMs float64 `toml:"tick_ms"`
}

// DefaultTopology: six regions, round trips from public inter-city measurements (rounded), broadband
// to datacentre access links, and 0.1% packet loss.
func DefaultTopology() Topology {
	return Topology{
		Regions: []Region{
			{"eu-west", "u09tvw", 1},      // Paris
			{"eu-central", "u33dc0", 1},   // Berlin
			{"us-east", "dr5reg", 1},      // New York
			{"us-west", "9q8yyk", 1},      // San Francisco
			{"ap-northeast", "xn76cy", 1}, // Tokyo
			{"sa-east", "6gyf4b", 1},      // São Paulo
		},
		RTTms: [][]float64{
			//  euw  euc  use  usw  apne  sae
			{10, 15, 80, 145, 220, 190},   // eu-west
			{15, 10, 90, 155, 235, 205},   // eu-central
			{80, 90, 12, 65, 160, 120},    // us-east
			{145, 155, 65, 12, 105, 175},  // us-west
			{220, 235, 160, 105, 8, 250},  // ap-northeast
			{190, 205, 120, 175, 250, 15}, // sa-east
		},
		PairJitter:    0.10,
		AccessMbps:    []int{50, 100, 500, 1000},
		AccessWeights: []float64{0.2, 0.4, 0.3, 0.1},
		AccessDelayMs: [2]float64{0.5, 4},
		Loss:          0.001,
		TickMs:        1,
	}
}

// Validate checks that the matrix is square, symmetric and matches the regions, and that the
// other figures are in range.
func (t *Topology) Validate() error {
	n := len(t.Regions)
	if n == 0 {
		return fmt.Errorf("topology: no regions")
	}
	if len(t.RTTms) != n {
		return fmt.Errorf("topology: rtt_ms has %d rows for %d regions", len(t.RTTms), n)
	}
	for i, row := range t.RTTms {
		if len(row) != n {
			return fmt.Errorf("topology: rtt_ms row %d (%s) has %d entries for %d regions", i, t.Regions[i].Name, len(row), n)
		}
		for j, v := range row {
			if v <= 0 || math.IsNaN(v) || v > 10_000 {
				return fmt.Errorf("topology: rtt_ms[%d][%d] = %v: want (0, 10000] ms", i, j, v)
			}
			if t.RTTms[j][i] != v {
				return fmt.Errorf("topology: rtt_ms is not symmetric at %s/%s", t.Regions[i].Name, t.Regions[j].Name)
			}
		}
	}
	for i, r := range t.Regions {
		if r.Name == "" || r.Geohash == "" || r.Weight <= 0 {
			return fmt.Errorf("topology: region %d needs a name, a geohash and a positive weight", i)
		}
	}
	if len(t.AccessMbps) == 0 || len(t.AccessMbps) != len(t.AccessWeights) {
		return fmt.Errorf("topology: access_mbps and access_weights must be non-empty and of equal length")
	}
	for _, m := range t.AccessMbps {
		if m <= 0 {
			return fmt.Errorf("topology: access bandwidth %d Mbps: want > 0", m)
		}
	}
	if t.AccessDelayMs[0] < 0 || t.AccessDelayMs[1] < t.AccessDelayMs[0] {
		return fmt.Errorf("topology: access_delay_ms %v: want 0 <= min <= max", t.AccessDelayMs)
	}
	if t.Loss < 0 || t.Loss >= 0.5 {
		return fmt.Errorf("topology: loss %v: want [0, 0.5)", t.Loss)
	}
	if t.TickMs < 0 || t.TickMs > 100 || math.IsNaN(t.TickMs) {
		return fmt.Errorf("topology: tick_ms %v: want [0, 100]", t.TickMs)
	}
	if t.PairJitter < 0 || t.PairJitter >= 1 {
		return fmt.Errorf("topology: pair_jitter %v: want [0, 1)", t.PairJitter)
	}
	return nil
}

// peerIP is the simulated address of peer i: 1.x.y.z, public, one per peer.
func peerIP(i int) net.IP { return net.IPv4(1, byte(i>>16), byte(i>>8), byte(i)) }

// peerIndex inverts peerIP; ok is false for an address that is not a peer's.
func peerIndex(addr net.Addr) (int, bool) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, false
	}
	ip := ua.IP.To4()
	if ip == nil || ip[0] != 1 {
		return 0, false
	}
	return int(ip[1])<<16 | int(ip[2])<<8 | int(ip[3]), true
}

// splitmix64 is a fixed, seedable mix for per-pair and per-packet draws.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// oneWay is the one-way delay between two peers: half their regions' round trip, shifted by the
// pair's fixed jitter, plus both last-mile delays.
func (t *Topology) oneWay(seed uint64, a, b *peerSpec) time.Duration {
	lo, hi := a.index, b.index
	if lo > hi {
		lo, hi = hi, lo
	}
	j := 1 + t.PairJitter*(2*unit(splitmix64(seed^uint64(lo)<<32^uint64(hi)))-1)
	ms := t.RTTms[a.region][b.region]/2*j + a.accessDelayMs + b.accessDelayMs
	return time.Duration(ms * float64(time.Millisecond))
}
