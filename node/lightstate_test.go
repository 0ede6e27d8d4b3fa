package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// testCheckpoint is a checkpoint of epoch 9 whose epochs 5..8 hold tickets signed by real keys.
func testCheckpoint(t testing.TB) epoch.Checkpoint {
	t.Helper()
	cp := epoch.Checkpoint{Epoch: 9, Sealed: map[uint64][]epoch.ImportedTicket{}}
	cp.Seed[0] = 0x5e
	r := rand.NewChaCha8([32]byte{9})
	for e := uint64(5); e < 9; e++ {
		cp.Sealed[e] = []epoch.ImportedTicket{}
		for range int(e % 3) {
			seed := make([]byte, ed25519.SeedSize)
			_, _ = r.Read(seed)
			key, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
			if err != nil {
				t.Fatal(err)
			}
			id, _ := peer.IDFromPrivateKey(key)
			msg := &pb.IndexerTicket{PeerId: []byte(id), Epoch: e, Role: "indexer", VrfProof: bytes.Repeat([]byte{1}, 80), Seats: 1,
				Seed: bytes.Repeat([]byte{2}, 32)}
			raw, err := p2p.Seal(p2p.KindIndexerTicket, msg, key)
			if err != nil {
				t.Fatal(err)
			}
			cp.Sealed[e] = append(cp.Sealed[e], epoch.ImportedTicket{Msg: msg, Signer: string(id), Raw: raw})
		}
	}
	return cp
}

// The light client's checkpoint file reads back as written; a damaged one, or one of another
// network, is refused whole (the client then verifies from genesis).
func TestLightState(t *testing.T) {
	cp := testCheckpoint(t)
	data, err := encodeLightState("net", cp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeLightState(data, "net")
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != cp.Epoch || got.Seed != cp.Seed || len(got.Sealed) != len(cp.Sealed) {
		t.Fatalf("read back epoch %d, %d sealed sets", got.Epoch, len(got.Sealed))
	}
	for e, set := range cp.Sealed {
		if len(got.Sealed[e]) != len(set) {
			t.Fatalf("epoch %d: %d tickets read back, %d written", e, len(got.Sealed[e]), len(set))
		}
		for i, it := range set {
			g := got.Sealed[e][i]
			if g.Signer != it.Signer || !bytes.Equal(g.Raw, it.Raw) || g.Msg.Epoch != e {
				t.Fatalf("epoch %d, ticket %d differs", e, i)
			}
		}
	}
	firstRaw := ""
	for _, set := range cp.Sealed {
		if len(set) > 0 {
			firstRaw = string(set[0].Raw)
			break
		}
	}
	hexOf := hex.EncodeToString
	hexRaw := func(s string) string { return hexOf([]byte(s)) }
	flipped := []byte(firstRaw)
	flipped[len(flipped)-3] ^= 1
	for name, bad := range map[string][]byte{
		"not JSON":            []byte("{"),
		"of another network":  bytes.Replace(data, []byte(`"net"`), []byte(`"other"`), 1),
		"a short seed":        bytes.Replace(data, []byte(hexOf(cp.Seed[:])), []byte("5e00"), 1),
		"a forged ticket":     bytes.Replace(data, []byte(hexRaw(firstRaw)), []byte(hexOf(flipped)), 1),
		"a ticket not in hex": bytes.Replace(data, []byte(hexRaw(firstRaw)), []byte("zz"), 1),
	} {
		if bytes.Equal(bad, data) {
			t.Fatalf("%s: the file was not changed", name)
		}
		if _, err := decodeLightState(bad, "net"); err == nil {
			t.Errorf("%s: read", name)
		}
	}

	// A client reads the file back, unless it is damaged.
	dir := t.TempDir()
	l := &LightClient{stateDir: dir, log: slog.New(slog.DiscardHandler)}
	if _, ok := l.loadCheckpoint("net", 20); ok {
		t.Fatal("a checkpoint without a file")
	}
	if err := os.WriteFile(filepath.Join(dir, lightStateFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, ok := l.loadCheckpoint("net", 20); !ok || c.Epoch != 9 {
		t.Errorf("checkpoint from the file: %v %v", c.Epoch, ok)
	}
	if _, ok := l.loadCheckpoint("net", 8); ok {
		t.Error("a checkpoint ahead of the clock was taken")
	}
	if err := os.WriteFile(filepath.Join(dir, lightStateFile), data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.loadCheckpoint("net", 20); ok {
		t.Error("a truncated file was taken")
	}
}

// A node given network.checkpoint starts there; a checkpoint that cannot be used stops it at New
// with a message that says why.
func TestNetworkCheckpointRefusals(t *testing.T) {
	cp := testCheckpoint(t) // epoch 9
	cfg := testNodeConfig(t.TempDir())
	cfg.Roles = nil
	cfg.Admin.Listen = ""
	cfg.Network.EpochLength = Duration(10 * time.Second)
	cfg.Network.GenesisTime = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) // epoch 360 or so
	write := func(network string, c epoch.Checkpoint) string {
		data, err := encodeLightState(network, c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "checkpoint.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ahead := cp
	ahead.Epoch = 100_000
	for name, c := range map[string]struct {
		path      string
		fragments []string
	}{
		"no such file":       {filepath.Join(t.TempDir(), "none.json"), []string{"network.checkpoint", "no such file"}},
		"of another network": {write("other", cp), []string{"network.checkpoint", "another network"}},
		"ahead of the clock": {write(cfg.Network.id(), ahead), []string{"network.checkpoint", "ahead of this clock"}},
		"a set missing": {write(cfg.Network.id(), epoch.Checkpoint{Epoch: 9, Seed: cp.Seed, Sealed: map[uint64][]epoch.ImportedTicket{}}),
			[]string{"network.checkpoint", "lacks the sealed set"}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := cfg
			cfg.DataDir = t.TempDir()
			cfg.Network.Checkpoint = c.path
			n, err := New(cfg, testNodeOptions())
			if err == nil {
				n.Close()
			}
			checkUserError(t, err, c.fragments...)
		})
	}
	// Without one, a genesis further back than MaxCatchUp epochs says what to do.
	cfg.DataDir = t.TempDir()
	cfg.Network.GenesisTime = time.Now().Add(-time.Duration(MaxCatchUp+10) * 10 * time.Second).UTC().Format(time.RFC3339)
	n, err := New(cfg, testNodeOptions())
	if err == nil {
		n.Close()
	}
	checkUserError(t, err, "network.checkpoint", "/v1/epochs/checkpoint")
}

// A checkpoint file comes from another node (GET /v1/epochs/checkpoint): whatever its bytes, reading
// it and starting a tracker from it either works or fails with an error.
func FuzzLightState(f *testing.F) {
	cp := testCheckpoint(f)
	data, err := encodeLightState("net", cp)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"network":"net","epoch":3,"seed":"00","sealed":{"2":["00"]}}`))
	f.Add([]byte(`{}`))
	cands := epoch.Allocation{{ID: "x", Stake: big.NewInt(1), QualityPPM: 1}}
	cfg := epoch.Config{Schedule: epoch.Schedule{Genesis: time.Unix(0, 0), Length: time.Minute},
		Params: epoch.Params{Expected: 4, RecencyWindow: 4}, Stakes: cands}
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := decodeLightState(data, "net")
		if err != nil {
			return
		}
		for e, set := range cp.Sealed {
			for _, it := range set {
				if it.Msg == nil || len(it.Raw) == 0 {
					t.Fatalf("epoch %d: ticket %v", e, it.Msg)
				}
			}
		}
		_, _ = epoch.NewTrackerFrom(cfg, time.Unix(3600, 0), cp)
	})
}
