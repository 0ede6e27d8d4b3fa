package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// NetworkConfig holds the network's genesis parameters: every node of one network must use the same
// values (docs/EPOCHS.md).
type NetworkConfig struct {
	// GenesisTime (RFC 3339) is when epoch 0 starts. Empty: this node takes no part in indexer
	// elections (the public network's genesis comes with its chain deployment).
	GenesisTime   string   `toml:"genesis_time"`
	GenesisSeed   string   `toml:"genesis_seed"` // 64 hex digits: seed(0) of the randomness beacon
	EpochLength   Duration `toml:"epoch_length"`
	CommitteeSize uint32   `toml:"committee_size"` // expected indexer seats per epoch
	RecencyWindow uint32   `toml:"recency_window"` // epochs a selection counts against a node
	MaxSeats      uint32   `toml:"max_seats"`      // 0: no cap
	Grace         Duration `toml:"grace"`          // an ended epoch's committee still serves, and its attestations count, this long
	// Allocation is a TOML file of [[candidate]] tables (peer_id, stake, quality_ppm): who may be
	// drawn, until stake comes from the chain. Empty: nobody is drawn.
	Allocation string `toml:"allocation"`
	// Regions are the region codes whose heartbeats an indexer follows while it serves.
	Regions []string `toml:"regions"`
	// Relays are well-known relay nodes (multiaddrs with /p2p/<peer ID>), which indexers ask for
	// grants from the start of their epoch. Without them an indexer looks relays up in the DHT
	// (relay:turn) when its first match of the epoch comes.
	Relays []string `toml:"relays"`
	// Checkpoint is a file holding the elections' state at some epoch (GET /v1/epochs/checkpoint of
	// a node you trust): the node starts following the epochs there instead of walking from
	// genesis, which a network more than MaxCatchUp epochs old needs. It is trusted as it is.
	Checkpoint string `toml:"checkpoint"`
}

// id names the network's elections: what a checkpoint is of.
func (nc *NetworkConfig) id() string { return nc.GenesisTime + "|" + nc.GenesisSeed }

// DefaultRegions are the regions of the public network (and of devnet and the simnet's topology).
var DefaultRegions = []string{"eu-west", "eu-central", "us-east", "us-west", "ap-northeast", "sa-east"}

// DefaultNetwork is the public network's genesis.
func DefaultNetwork() NetworkConfig {
	seed := sha256.Sum256([]byte("rendermesh genesis 2026"))
	return NetworkConfig{
		GenesisSeed:   hex.EncodeToString(seed[:]),
		EpochLength:   Duration(epoch.DefaultLength),
		CommitteeSize: 16,
		RecencyWindow: 4,
		Regions:       slices.Clone(DefaultRegions),
	}
}

// AllocationFile is the format of NetworkConfig.Allocation.
type AllocationFile struct {
	Candidate []struct {
		PeerID     string `toml:"peer_id"`
		Stake      string `toml:"stake"` // base units, decimal
		QualityPPM uint32 `toml:"quality_ppm"`
		Checker    bool   `toml:"checker"` // holds a checker licence
	} `toml:"candidate"`
}

// LoadAllocation reads an allocation file.
func LoadAllocation(path string) (epoch.Allocation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: network.allocation: %v", ErrConfig, err)
	}
	var f AllocationFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("%w: network.allocation %s: %v", ErrConfig, path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, fmt.Errorf("%w: network.allocation %s: unknown key %s", ErrConfig, path, un[0])
	}
	var out epoch.Allocation
	for i, c := range f.Candidate {
		id, err := peer.Decode(c.PeerID)
		if err != nil {
			return nil, fmt.Errorf("%w: network.allocation %s: candidate %d: peer_id: %v", ErrConfig, path, i+1, err)
		}
		stake, ok := new(big.Int).SetString(c.Stake, 10)
		if !ok || stake.Sign() < 0 {
			return nil, fmt.Errorf("%w: network.allocation %s: candidate %d: stake %q is not a non-negative integer", ErrConfig, path, i+1, c.Stake)
		}
		cand, err := NewCandidate(id, stake, c.QualityPPM)
		if err != nil {
			return nil, fmt.Errorf("%w: network.allocation %s: candidate %d: %v", ErrConfig, path, i+1, err)
		}
		cand.Checker = c.Checker
		out = append(out, cand)
	}
	return SortAllocation(out)
}

// NewCandidate makes a sortition candidate of a peer; its VRF key is its Ed25519 identity key.
func NewCandidate(id peer.ID, stake *big.Int, qualityPPM uint32) (epoch.Candidate, error) {
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return epoch.Candidate{}, fmt.Errorf("peer %s: no public key in its ID: %v", id, err)
	}
	if pk.Type() != crypto.Ed25519 {
		return epoch.Candidate{}, fmt.Errorf("peer %s: key type %s, the VRF needs Ed25519", id, pk.Type())
	}
	raw, err := pk.Raw()
	if err != nil {
		return epoch.Candidate{}, err
	}
	return epoch.Candidate{ID: string(id), Key: ed25519.PublicKey(raw), Stake: stake, QualityPPM: qualityPPM}, nil
}

// SortAllocation sorts candidates by peer ID and rejects duplicates.
func SortAllocation(a epoch.Allocation) (epoch.Allocation, error) {
	slices.SortFunc(a, func(x, y epoch.Candidate) int { return strings.Compare(x.ID, y.ID) })
	for i := 1; i < len(a); i++ {
		if a[i].ID == a[i-1].ID {
			return nil, fmt.Errorf("%w: allocation lists peer %s twice", ErrConfig, peer.ID(a[i].ID))
		}
	}
	return a, nil
}

// Elections reports whether the network configuration has a genesis, without which a node takes no
// part in indexer elections.
func (nc *NetworkConfig) Elections() bool { return nc.GenesisTime != "" }

// MaxCatchUp is how many epochs of committee records a node imports to catch up (about 10 days of
// 15-minute epochs). A node that would need more cannot verify the beacon from genesis and takes no
// part in elections until checkpoints (a chain block hash) exist: docs/EPOCHS.md.
const MaxCatchUp = 1024

// EpochConfig checks the network configuration and returns the epoch tracker's configuration. stakes,
// when set, replaces the allocation file (devnet and simnet pass theirs in memory).
func (nc *NetworkConfig) EpochConfig(stakes epoch.StakeSource) (epoch.Config, error) {
	if !nc.Elections() {
		return epoch.Config{}, nil
	}
	genesis, err := time.Parse(time.RFC3339Nano, nc.GenesisTime)
	if err != nil {
		return epoch.Config{}, fmt.Errorf("%w: network.genesis_time: want RFC 3339, e.g. 2026-01-01T00:00:00Z: %v", ErrConfig, err)
	}
	seedBytes, err := hex.DecodeString(nc.GenesisSeed)
	if err != nil || len(seedBytes) != len(epoch.Seed{}) {
		return epoch.Config{}, fmt.Errorf("%w: network.genesis_seed: want 64 hex digits", ErrConfig)
	}
	cfg := epoch.Config{
		Schedule: epoch.Schedule{Genesis: genesis, Length: time.Duration(nc.EpochLength)},
		Params:   epoch.Params{Expected: nc.CommitteeSize, RecencyWindow: nc.RecencyWindow, MaxSeats: nc.MaxSeats},
		Grace:    time.Duration(nc.Grace),
		Stakes:   stakes,
	}
	copy(cfg.GenesisSeed[:], seedBytes)
	for _, r := range nc.Relays {
		if _, err := peer.AddrInfoFromString(r); err != nil {
			return epoch.Config{}, fmt.Errorf("%w: network.relays: %q: want a multiaddr ending in /p2p/<peer ID>: %v", ErrConfig, r, err)
		}
	}
	for _, r := range nc.Regions {
		if !container.ValidRegion(r) {
			return epoch.Config{}, fmt.Errorf("%w: network.regions: %q is not a region code such as eu-west", ErrConfig, r)
		}
	}
	if cfg.Stakes == nil {
		cfg.Stakes = epoch.Allocation(nil)
		if nc.Allocation != "" {
			// Validation only checks the path here; the node loads it when it starts.
			if _, err := os.Stat(nc.Allocation); err != nil {
				return epoch.Config{}, fmt.Errorf("%w: network.allocation: %v", ErrConfig, err)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return epoch.Config{}, fmt.Errorf("%w: network: %v", ErrConfig, err)
	}
	return cfg, nil
}

// LoadNetwork reads the [network] section of a node configuration file (other sections are checked
// and ignored), for clients that verify the network's elections without running a node.
func LoadNetwork(path string) (NetworkConfig, error) {
	cfg := Default()
	if err := loadFile(path, &cfg); err != nil {
		return NetworkConfig{}, err
	}
	if _, err := cfg.Network.EpochConfig(nil); err != nil {
		return NetworkConfig{}, err
	}
	return cfg.Network, nil
}

// WriteNetworkFiles writes a network's genesis as dir/network.toml (a node configuration file with
// only its [network] section) and its allocation as dir/allocation.toml, and returns the first path.
func WriteNetworkFiles(dir string, nc NetworkConfig, a epoch.Allocation) (string, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	var alloc strings.Builder
	alloc.WriteString("# Who holds stake (base units) and how well they serve, until the chain says so.\n")
	for _, c := range a {
		fmt.Fprintf(&alloc, "\n[[candidate]]\npeer_id = %q\nstake = %q\nquality_ppm = %d\n", peer.ID(c.ID).String(), c.Stake.String(), c.QualityPPM)
		if c.Checker {
			alloc.WriteString("checker = true\n")
		}
	}
	nc.Allocation = filepath.Join(absDir, "allocation.toml")
	if err := writeFileAtomic(nc.Allocation, []byte(alloc.String()), 0o644); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# The network's genesis (docs/CONFIG.md, [network]).\n")
	if err := toml.NewEncoder(&b).Encode(struct {
		Network NetworkConfig `toml:"network"`
	}{nc}); err != nil {
		return "", err
	}
	path := filepath.Join(absDir, "network.toml")
	return path, writeFileAtomic(path, []byte(b.String()), 0o644)
}
