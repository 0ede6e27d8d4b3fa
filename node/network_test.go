package node

import (
	"crypto/ed25519"
	"fmt"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/roles/epoch"
)

// edPeer is a deterministic Ed25519 peer: its ID and raw public key.
func edPeer(t *testing.T, i byte) (peer.ID, ed25519.PublicKey) {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = i, 0x4e
	sk := ed25519.NewKeyFromSeed(seed)
	key, err := crypto.UnmarshalEd25519PrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return peerIDOf(t, key), sk.Public().(ed25519.PublicKey)
}

// writeAllocation writes an allocation file and returns its path.
func writeAllocation(t *testing.T, text string) string { t.Helper(); return writeConfig(t, text) }

func candidateTOML(id peer.ID, stake string, quality uint32) string {
	return fmt.Sprintf("[[candidate]]\npeer_id = %q\nstake = %q\nquality_ppm = %d\n\n", id, stake, quality)
}

func TestLoadAllocation(t *testing.T) {
	type want struct {
		key     ed25519.PublicKey
		stake   string
		quality uint32
	}
	wants := map[string]want{}
	var text strings.Builder
	for i, stake := range []string{"1000000000000000000000000", "0", "42"} {
		id, pk := edPeer(t, byte(i+1))
		text.WriteString(candidateTOML(id, stake, uint32(100_000*i)))
		wants[string(id)] = want{pk, stake, uint32(100_000 * i)}
	}
	a, err := LoadAllocation(writeAllocation(t, text.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || !slices.IsSortedFunc(a, func(x, y epoch.Candidate) int { return strings.Compare(x.ID, y.ID) }) {
		t.Fatalf("allocation of %d candidates, sorted %v", len(a), slices.IsSortedFunc(a, func(x, y epoch.Candidate) int { return strings.Compare(x.ID, y.ID) }))
	}
	for _, c := range a {
		w, ok := wants[c.ID]
		if !ok || !c.Key.Equal(w.key) || c.Stake.String() != w.stake || c.QualityPPM != w.quality {
			t.Errorf("candidate %s: key %x, stake %s, quality %d; want %+v", peer.ID(c.ID), c.Key, c.Stake, c.QualityPPM, w)
		}
	}
	if got := a.Candidates(99); len(got) != 3 {
		t.Errorf("Candidates(99) = %d candidates", len(got))
	}
	empty, err := LoadAllocation(writeAllocation(t, "# nobody yet\n"))
	if err != nil || len(empty) != 0 {
		t.Errorf("empty allocation: %v, %v", empty, err)
	}
}

func TestLoadAllocationErrors(t *testing.T) {
	idA, _ := edPeer(t, 1)
	idB, _ := edPeer(t, 2)
	secp, _, err := crypto.GenerateSecp256k1Key(rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	idSecp := peerIDOf(t, secp)
	for _, tc := range []struct {
		name, text string
		fragments  []string
	}{
		{"bad peer ID", candidateTOML(idA, "1", 0) + candidateTOML("12D3KooWnotapeer", "1", 0), []string{"candidate 2", "peer_id"}},
		{"negative stake", candidateTOML(idA, "-1", 0), []string{"candidate 1", `stake "-1"`}},
		{"stake not a number", candidateTOML(idA, "1e18", 0), []string{`stake "1e18"`}},
		{"no stake", fmt.Sprintf("[[candidate]]\npeer_id = %q\n", idA), []string{`stake ""`}},
		{"unknown key", fmt.Sprintf("[[candidate]]\npeer_id = %q\nstake = \"1\"\nstakes = \"2\"\n", idA), []string{"unknown key", "stakes"}},
		{"duplicate peer", candidateTOML(idA, "1", 0) + candidateTOML(idB, "2", 0) + candidateTOML(idA, "3", 0), []string{"twice", idA.String()}},
		{"secp256k1 peer", candidateTOML(idSecp, "1", 0), []string{"candidate 1", "Secp256k1", "Ed25519"}},
		{"not TOML", "[[candidate]\n", []string{"network.allocation"}},
		{"wrong type", "[[candidate]]\npeer_id = 7\n", []string{"network.allocation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeAllocation(t, tc.text)
			a, err := LoadAllocation(path)
			if a != nil {
				t.Errorf("allocation %v returned with an error", a)
			}
			checkUserError(t, err, tc.fragments...)
		})
	}
	_, err = LoadAllocation(filepath.Join(t.TempDir(), "missing.toml"))
	checkUserError(t, err, "network.allocation", "missing.toml")
}

func TestNewCandidate(t *testing.T) {
	id, pk := edPeer(t, 3)
	c, err := NewCandidate(id, big.NewInt(5), 7)
	if err != nil || c.ID != string(id) || !c.Key.Equal(pk) || c.Stake.Int64() != 5 || c.QualityPPM != 7 {
		t.Fatalf("NewCandidate = %+v, %v", c, err)
	}
	if _, err := NewCandidate(peer.ID("junk"), big.NewInt(5), 0); err == nil {
		t.Error("a peer ID without a key makes a candidate")
	}
}

func TestSortAllocation(t *testing.T) {
	var a epoch.Allocation
	for i := byte(1); i <= 5; i++ {
		id, _ := edPeer(t, i)
		c, err := NewCandidate(id, big.NewInt(int64(i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		a = append(a, c)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
	sorted, err := SortAllocation(slices.Clone(a))
	if err != nil || !slices.IsSortedFunc(sorted, func(x, y epoch.Candidate) int { return strings.Compare(x.ID, y.ID) }) {
		t.Fatalf("SortAllocation: %v", err)
	}
	_, err = SortAllocation(append(slices.Clone(a), a[2]))
	checkUserError(t, err, "twice", peer.ID(a[2].ID).String())
	if got, err := SortAllocation(nil); err != nil || len(got) != 0 {
		t.Errorf("SortAllocation(nil) = %v, %v", got, err)
	}
}

// electionNetwork is a valid network configuration with elections.
func electionNetwork() NetworkConfig {
	nc := DefaultNetwork()
	nc.GenesisTime = "2026-01-01T00:00:00Z"
	nc.EpochLength = Duration(10 * time.Second)
	return nc
}

func TestEpochConfig(t *testing.T) {
	nc := electionNetwork()
	nc.MaxSeats = 3
	stakes := epoch.Allocation{{ID: "x", Stake: big.NewInt(1)}}
	cfg, err := nc.EpochConfig(stakes)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Schedule.Genesis.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || cfg.Schedule.Length != 10*time.Second {
		t.Errorf("schedule %+v", cfg.Schedule)
	}
	if cfg.Params != (epoch.Params{Expected: 16, RecencyWindow: 4, MaxSeats: 3}) {
		t.Errorf("params %+v", cfg.Params)
	}
	if fmt.Sprintf("%x", cfg.GenesisSeed) != nc.GenesisSeed {
		t.Errorf("genesis seed %x, want %s", cfg.GenesisSeed, nc.GenesisSeed)
	}
	if cfg.Grace != time.Second {
		t.Errorf("grace %s, want the default of a tenth of the epoch", cfg.Grace)
	}
	if got := cfg.Stakes.Candidates(0); len(got) != 1 || got[0].ID != "x" {
		t.Errorf("stakes %v, want those passed in", got)
	}
	// Without stakes and without an allocation file nobody is drawn.
	nc = electionNetwork()
	cfg, err = nc.EpochConfig(nil)
	if err != nil || cfg.Stakes == nil || len(cfg.Stakes.Candidates(0)) != 0 {
		t.Errorf("no allocation: stakes %v, %v", cfg.Stakes, err)
	}
	// An allocation file that exists is loaded later; EpochConfig only checks it is there.
	nc = electionNetwork()
	nc.Allocation = writeAllocation(t, "")
	if _, err := nc.EpochConfig(nil); err != nil {
		t.Errorf("allocation file present: %v", err)
	}
}

func TestEpochConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edit      func(nc *NetworkConfig)
		fragments []string
	}{
		{"bad genesis time", func(nc *NetworkConfig) { nc.GenesisTime = "2026-01-01 00:00" }, []string{"network.genesis_time", "RFC 3339"}},
		{"genesis without zone", func(nc *NetworkConfig) { nc.GenesisTime = "2026-01-01T00:00:00" }, []string{"network.genesis_time"}},
		{"bad seed hex", func(nc *NetworkConfig) { nc.GenesisSeed = strings.Repeat("zz", 32) }, []string{"network.genesis_seed", "64 hex digits"}},
		{"short seed", func(nc *NetworkConfig) { nc.GenesisSeed = "abcd" }, []string{"network.genesis_seed"}},
		{"no seed", func(nc *NetworkConfig) { nc.GenesisSeed = "" }, []string{"network.genesis_seed"}},
		{"short epochs", func(nc *NetworkConfig) { nc.EpochLength = Duration(999 * time.Millisecond) }, []string{"network", "shorter than 1s"}},
		{"no epoch length", func(nc *NetworkConfig) { nc.EpochLength = 0 }, []string{"network", "epoch length"}},
		{"committee size 0", func(nc *NetworkConfig) { nc.CommitteeSize = 0 }, []string{"network", "Expected is 0"}},
		{"committee too large", func(nc *NetworkConfig) { nc.CommitteeSize = epoch.MaxExpected + 1 }, []string{"network", "above the maximum"}},
		{"recency window too long", func(nc *NetworkConfig) { nc.RecencyWindow = epoch.MaxRecencyWindow + 1 }, []string{"network", "RecencyWindow"}},
		{"missing allocation", func(nc *NetworkConfig) { nc.Allocation = filepath.Join(t.TempDir(), "none.toml") }, []string{"network.allocation", "none.toml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := electionNetwork()
			tc.edit(&nc)
			cfg, err := nc.EpochConfig(nil)
			checkUserError(t, err, tc.fragments...)
			if cfg.Stakes != nil || !cfg.Schedule.Genesis.IsZero() {
				t.Errorf("configuration %+v returned with an error", cfg)
			}
			// The node's configuration check reports the same.
			c := Default()
			c.Network = nc
			checkUserError(t, c.Validate(), tc.fragments...)
		})
	}
}

func TestElections(t *testing.T) {
	nc := DefaultNetwork()
	if nc.Elections() {
		t.Fatal("the default network holds elections without a genesis time")
	}
	// Without a genesis nothing else is checked: a node takes no part.
	nc.GenesisSeed, nc.CommitteeSize = "junk", 0
	cfg, err := nc.EpochConfig(nil)
	if err != nil || cfg.Stakes != nil || !cfg.Schedule.Genesis.IsZero() {
		t.Fatalf("EpochConfig without elections = %+v, %v; want the zero config", cfg, err)
	}
	if nc = electionNetwork(); !nc.Elections() {
		t.Fatal("a network with a genesis time holds no elections")
	}
}

func TestDefaultNetworkValidates(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default(): %v", err)
	}
	// The public network's parameters are valid once a genesis time is set.
	c.Network.GenesisTime = "2026-01-01T00:00:00Z"
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() with a genesis time: %v", err)
	}
	cfg, err := c.Network.EpochConfig(nil)
	if err != nil || cfg.Schedule.Length != epoch.DefaultLength || cfg.Grace != 30*time.Second {
		t.Fatalf("default epoch config %+v, %v", cfg, err)
	}
}
