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
	Epoch    uint64        `json:"epoch"`
	Verified bool          `json:"verified"` // every ticket checked from genesis
	Indexers []indexerJSON `json:"indexers"`
	QueryMS  float64       `json:"query_ms"`
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
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	nc, err := loadElections(*config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	lc, err := node.NewLightClient(ctx, node.LightOptions{Bootstrap: boot.peers(), Timeout: *timeout})
	if err != nil {
		return err
	}
	defer lc.Close()
	start := time.Now()
	committee, err := lc.Indexers(ctx, nc, nil)
	if err != nil {
		return err
	}
	out := indexersJSON{Verified: true, Indexers: []indexerJSON{}, QueryMS: float64(time.Since(start).Microseconds()) / 1000}
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
	fmt.Fprintf(stdout, "epoch %d: %d indexers, every ticket verified from genesis (%s)\n", out.Epoch, len(out.Indexers), time.Duration(out.QueryMS*1e6).Round(time.Millisecond))
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
