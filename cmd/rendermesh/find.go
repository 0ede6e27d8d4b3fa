package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/node"
	"github.com/rendermesh/rendermesh/roles/consumer"
	"github.com/rendermesh/rendermesh/roles/container"
)

// foundJSON is one container in `find --json`.
type foundJSON struct {
	PeerID    string   `json:"peer_id"`
	State     string   `json:"state"`
	GPUs      []string `json:"gpus"`
	Simulated bool     `json:"simulated"`
	Region    string   `json:"region"`
	Geohash   string   `json:"geohash"`
	Apps      []string `json:"apps"`
	Fee       string   `json:"session_fee"`
	Seq       uint64   `json:"seq"`
	Expires   string   `json:"expires"`
	Source    string   `json:"source"` // container (its own answer) or dht
}

type findJSON struct {
	Query      consumer.Query `json:"-"`
	Keys       []string       `json:"keys"`
	Providers  int            `json:"providers"`
	Missing    int            `json:"missing"`
	Found      int            `json:"found"`
	QueryMS    float64        `json:"query_ms"`
	Containers []foundJSON    `json:"containers"`
}

func cmdFind(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("find", stderr)
	boot := bootstrapFlag(fs)
	var q consumer.Query
	fs.StringVar(&q.GPU, "gpu", "", "GPU model, e.g. H100 (\"none\" for CPU-only containers)")
	fs.StringVar(&q.Region, "region", "", "geohash prefix, e.g. u33")
	fs.StringVar(&q.App, "app", "", "pre-installed application, e.g. demo")
	state := fs.String("state", "", "keep only containers in this state, e.g. standby")
	maxFee := fs.String("max-fee", "", "keep only containers asking at most this per session")
	asJSON := fs.Bool("json", false, "print a JSON object")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if *state != "" {
		s, err := container.ParseState(*state)
		if err != nil {
			return fmt.Errorf("%w: --state %q: %v", errUsage, *state, err)
		}
		q.States = append(q.States, s)
	}
	if *maxFee != "" {
		f, err := node.ParseAmount(*maxFee)
		if err != nil {
			return fmt.Errorf("%w: --max-fee: %v", errUsage, err)
		}
		q.MaxFee = f
	}
	if _, err := q.Keys(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	lc, err := node.NewLightClient(ctx, node.LightOptions{Bootstrap: boot.peers(), Timeout: *timeout})
	if err != nil {
		return err
	}
	defer lc.Close()
	start := time.Now()
	found, st, err := lc.Find(ctx, q)
	el := time.Since(start)
	if err != nil {
		return err
	}
	out := findJSON{Keys: st.Keys, Providers: st.Providers, Missing: st.Missing, Found: len(found),
		QueryMS: float64(el.Microseconds()) / 1000, Containers: []foundJSON{}}
	for _, f := range found {
		out.Containers = append(out.Containers, toFoundJSON(f))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "%d containers match %s (%d providers, %d without a valid record) in %s\n",
		len(found), strings.Join(st.Keys, " "), st.Providers, st.Missing, el.Round(time.Millisecond))
	if len(found) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tGPU\tREGION\tGEOHASH\tAPPS\tFEE")
	for _, f := range out.Containers {
		gpus := strings.Join(f.GPUs, ",")
		if f.Simulated {
			gpus += " (simulated)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.PeerID, f.State, gpus, f.Region, f.Geohash, strings.Join(f.Apps, ","), f.Fee)
	}
	return tw.Flush()
}

func toFoundJSON(f consumer.Found) foundJSON {
	r := f.Record
	out := foundJSON{PeerID: f.PeerID, State: container.StateName(r.GetState()), Simulated: r.GetHardware().GetSimulated(),
		Region: r.GetLocation().GetRegion(), Geohash: r.GetLocation().GetGeohash(), Apps: r.GetApps(),
		Fee: node.FormatAmount(r.GetSessionFeeMicros()), Seq: r.GetSeq(),
		Expires: time.UnixMilli(r.GetExpiresUnixMs()).UTC().Format(time.RFC3339), Source: f.Source}
	out.GPUs = container.GPUModels(r.GetHardware())
	if _, err := peer.Decode(f.PeerID); err != nil {
		out.PeerID = "invalid"
	}
	return out
}

// bootstrapList is the --bootstrap flag of light-client commands: comma-separated peers, repeatable,
// RENDERMESH_BOOTSTRAP when not given.
type bootstrapList []string

func bootstrapFlag(fs *flag.FlagSet) *bootstrapList {
	b := new(bootstrapList)
	fs.Func("bootstrap", "comma-separated peers to join through (env RENDERMESH_BOOTSTRAP)", func(s string) error {
		*b = append(*b, strings.Split(s, ",")...)
		return nil
	})
	return b
}

func (b *bootstrapList) peers() []string {
	if len(*b) == 0 {
		if v := os.Getenv(node.EnvName("bootstrap")); v != "" {
			return strings.Split(v, ",")
		}
	}
	return *b
}
