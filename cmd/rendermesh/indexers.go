package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rendermesh/rendermesh/node"
)

// indexersJSON is what `indexers --json` prints.
type indexersJSON struct {
	Epoch    uint64 `json:"epoch"`
	Verified bool   `json:"verified"` // every ticket checked, from genesis or the client's checkpoint
	// VerifiedFrom is the epoch the walk started from: 0 (genesis), or the checkpoint's that
	// --data-dir kept from an earlier run.
	VerifiedFrom uint64        `json:"verified_from_epoch"`
	Indexers     []indexerJSON `json:"indexers"`
	QueryMS      float64       `json:"query_ms"`
}

type indexerJSON struct {
	PeerID string   `json:"peer_id"`
	Seats  uint32   `json:"seats"`
	Addrs  []string `json:"addrs"`
}

func cmdIndexers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("indexers", stderr)
	boot := bootstrapFlag(fs)
	config := fs.String("config", "", "a configuration file with the network's [network] genesis (env RENDERMESH_CONFIG)")
	asJSON := fs.Bool("json", false, "print a JSON object")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	dataDir := fs.String("data-dir", "", "keep a checkpoint of the epochs verified here, so that the next run verifies only the epochs since (as connect does in its --data-dir); empty: verify from genesis")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if *dataDir != "" {
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
	}
	nc, err := loadElections(*config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	lc, err := node.NewLightClient(ctx, node.LightOptions{Bootstrap: boot.peers(), Timeout: *timeout, StateDir: *dataDir})
	if err != nil {
		return err
	}
	defer lc.Close()
	start := time.Now()
	committee, err := lc.Indexers(ctx, nc, nil)
	if err != nil {
		return err
	}
	out := indexersJSON{Verified: true, VerifiedFrom: lc.WalkedFrom(), Indexers: []indexerJSON{}, QueryMS: float64(time.Since(start).Microseconds()) / 1000}
	for _, tk := range committee {
		out.Epoch = tk.Epoch
		ix := indexerJSON{PeerID: peer.ID(tk.ID).String(), Seats: tk.Seats}
		for _, b := range tk.Msg.GetAddrs() {
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				ix.Addrs = append(ix.Addrs, a.String())
			}
		}
		out.Indexers = append(out.Indexers, ix)
	}
	if len(committee) == 0 {
		out.Epoch = lc.Epoch(nc)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	from := "genesis"
	if out.VerifiedFrom > 0 {
		from = fmt.Sprintf("the checkpoint of epoch %d", out.VerifiedFrom)
	}
	fmt.Fprintf(stdout, "epoch %d: %d indexers, every ticket verified from %s (%s)\n", out.Epoch, len(out.Indexers), from, time.Duration(out.QueryMS*1e6).Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSEATS\tADDRESSES")
	for _, ix := range out.Indexers {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", ix.PeerID, ix.Seats, strings.Join(ix.Addrs, " "))
	}
	return tw.Flush()
}

// loadElections reads the --config file's [network] section (RENDERMESH_CONFIG when not given) for
// the light-client commands, which need a network that holds elections.
func loadElections(config string) (node.NetworkConfig, error) {
	if config == "" {
		config = os.Getenv(node.EnvName("config"))
	}
	if config == "" {
		return node.NetworkConfig{}, fmt.Errorf("%w: --config FILE is required: the network's genesis (devnet writes DIR/network.toml)", errUsage)
	}
	nc, err := node.LoadNetwork(config)
	if err != nil {
		return node.NetworkConfig{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if !nc.Elections() {
		return node.NetworkConfig{}, fmt.Errorf("%w: %s sets no network.genesis_time: that network holds no elections", errUsage, config)
	}
	return nc, nil
}
