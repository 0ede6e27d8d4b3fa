package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/roles/epoch"
)

// A light client's epoch state (docs/EPOCHS.md, "Light clients"): after verifying the walk up to
// the current epoch, the client keeps a checkpoint of it (epoch.Tracker.Checkpoint), in memory and,
// with LightOptions.StateDir, in a file, so that its next call, or its next run, verifies only the
// epochs since. The file is this client's own work: it is trusted as the receipts next to it are.

// lightStateFile is the name of the checkpoint file in LightOptions.StateDir.
const lightStateFile = "epoch-checkpoint.json"

// lightState is the file's form: the network it is of (genesis time and seed), the checkpoint's
// epoch and seed (hex), and the sealed sets before it as ticket envelopes (hex), by epoch.
type lightState struct {
	Network string              `json:"network"`
	Epoch   uint64              `json:"epoch"`
	Seed    string              `json:"seed"`
	Sealed  map[string][]string `json:"sealed"`
}

func encodeLightState(network string, cp epoch.Checkpoint) ([]byte, error) {
	st := lightState{Network: network, Epoch: cp.Epoch, Seed: hex.EncodeToString(cp.Seed[:]), Sealed: map[string][]string{}}
	for e, set := range cp.Sealed {
		raws := make([]string, 0, len(set))
		for _, it := range set {
			raws = append(raws, hex.EncodeToString(it.Raw))
		}
		st.Sealed[strconv.FormatUint(e, 10)] = raws
	}
	return json.MarshalIndent(st, "", " ")
}

// decodeLightState reads a checkpoint file of network: every ticket envelope's signature is
// checked again (a damaged file is refused whole, never half used). Whether the sets are the
// network's is not: a checkpoint is trusted (epoch.NewTrackerFrom).
func decodeLightState(data []byte, network string) (epoch.Checkpoint, error) {
	var st lightState
	if err := json.Unmarshal(data, &st); err != nil {
		return epoch.Checkpoint{}, err
	}
	if st.Network != network {
		return epoch.Checkpoint{}, errors.New("of another network")
	}
	cp := epoch.Checkpoint{Epoch: st.Epoch, Sealed: map[uint64][]epoch.ImportedTicket{}}
	seed, err := hex.DecodeString(st.Seed)
	if err != nil || len(seed) != len(cp.Seed) {
		return epoch.Checkpoint{}, fmt.Errorf("bad seed %q", st.Seed)
	}
	copy(cp.Seed[:], seed)
	for es, raws := range st.Sealed {
		e, err := strconv.ParseUint(es, 10, 64)
		if err != nil {
			return epoch.Checkpoint{}, fmt.Errorf("bad epoch %q", es)
		}
		set := make([]epoch.ImportedTicket, 0, len(raws))
		for _, rh := range raws {
			raw, err := hex.DecodeString(rh)
			if err != nil {
				return epoch.Checkpoint{}, fmt.Errorf("epoch %d: %w", e, err)
			}
			msg, signer, err := p2p.OpenIndexerTicket(raw)
			if err != nil {
				return epoch.Checkpoint{}, fmt.Errorf("epoch %d: %w", e, err)
			}
			set = append(set, epoch.ImportedTicket{Msg: msg, Signer: string(signer), Raw: raw})
		}
		cp.Sealed[e] = set
	}
	return cp, nil
}

// readCheckpointFile reads a checkpoint file of network (as GET /v1/epochs/checkpoint serves it).
func readCheckpointFile(path, network string) (epoch.Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return epoch.Checkpoint{}, err
	}
	return decodeLightState(data, network)
}

// EpochCheckpoint is this node's checkpoint of the current epoch, in the form network.checkpoint
// and light clients' state files take; an error when the node takes no part in elections or has
// not caught up with them yet.
func (n *Node) EpochCheckpoint() ([]byte, error) {
	if n.ep == nil {
		return nil, errors.New("this node takes no part in the elections (no network.genesis_time)")
	}
	cur := n.ep.tr.Schedule().Epoch(n.opts.Clock.Now())
	cp, ok := n.ep.tr.Checkpoint(cur)
	if !ok {
		return nil, fmt.Errorf("not caught up with the elections yet (epoch %d)", cur)
	}
	return encodeLightState(n.cfg.Network.id(), cp)
}

// loadCheckpoint returns the checkpoint to start the walk from, for network key and the current
// epoch cur: the one kept in memory, else the state file's. Caller holds l.mu.
func (l *LightClient) loadCheckpoint(key string, cur uint64) (epoch.Checkpoint, bool) {
	if l.ckpt != nil && l.ckptKey == key && l.ckpt.Epoch <= cur {
		return *l.ckpt, true
	}
	if l.stateDir == "" {
		return epoch.Checkpoint{}, false
	}
	path := filepath.Join(l.stateDir, lightStateFile)
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("epoch checkpoint unreadable: verifying from genesis", "file", path, "err", err)
		}
		return epoch.Checkpoint{}, false
	}
	cp, err := decodeLightState(data, key)
	if err != nil {
		l.log.Warn("epoch checkpoint not usable: verifying from genesis", "file", path, "err", err)
		return epoch.Checkpoint{}, false
	}
	if cp.Epoch > cur {
		l.log.Warn("epoch checkpoint is ahead of this clock: verifying from genesis", "file", path, "epoch", cp.Epoch, "current", cur)
		return epoch.Checkpoint{}, false
	}
	return cp, true
}

// saveCheckpoint keeps tr's checkpoint of epoch e, in memory and in the state file. Caller holds
// l.mu.
func (l *LightClient) saveCheckpoint(key string, tr *epoch.Tracker, e uint64) {
	cp, ok := tr.Checkpoint(e)
	if !ok {
		return
	}
	l.ckpt, l.ckptKey = &cp, key
	if l.stateDir == "" {
		return
	}
	data, err := encodeLightState(key, cp)
	if err == nil {
		err = writeFileAtomic(filepath.Join(l.stateDir, lightStateFile), data, 0o600)
	}
	if err != nil {
		l.log.Warn("keep the epoch checkpoint", "dir", l.stateDir, "err", err)
	}
}
