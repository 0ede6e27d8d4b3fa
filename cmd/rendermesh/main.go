// randseednop=0 lets the simnet seed the global math/rand source that gossipsub draws from, so
// that a seed reproduces a run; nothing else in the binary seeds it.
//
//go:debug randseednop=0

// Command rendermesh is the one binary of the rendermesh network: it runs a node, a whole devnet on
// one machine, and the light client's queries. Run `rendermesh help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rendermesh/rendermesh/node"
)

const usage = `rendermesh: an open, decentralized GPU cloud

Usage: rendermesh <command> [flags]

Commands:
  node      run a node (rendermesh node --roles container --region eu-west --geohash u09tvw)
  node lock|unlock|status|fee AMOUNT
            take the local container out of scheduling, put it back, show its state, or change
            its ask per 15-minute session
  devnet    run a whole network of real nodes in this process (rendermesh devnet --nodes 30)
  simnet    simulate hundreds to thousands of real nodes on simulated links, reproducibly
            (rendermesh simnet run --peers 100 --seed 1 --scenario steady --out out/; simnet list)
  find      find containers by capability (rendermesh find --bootstrap ADDR --gpu H100 --region u33 --app demo)
  indexers  find the current epoch's indexers and verify their tickets from genesis
            (rendermesh indexers --bootstrap ADDR --config network.toml)
  connect   get matched to a container by the epoch's indexers and hold a session
            (rendermesh connect --bootstrap ADDR --config network.toml --app demo --json)
  keys      show this node's peer ID (rendermesh keys --data-dir DIR)
  version   print the version

Run 'rendermesh <command> -h' for a command's flags. Every flag can also be set by an environment
variable: --data-dir is RENDERMESH_DATA_DIR. A TOML file (--config) sets the same; see docs/CONFIG.md.
`

// errUsage marks errors that come from bad arguments (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "rendermesh:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "rendermesh:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "node":
		if len(rest) > 0 {
			switch rest[0] {
			case "lock", "unlock", "status", "fee":
				return cmdNodeAdmin(ctx, rest[0], rest[1:], stdout, stderr)
			}
		}
		return cmdNode(ctx, rest, stderr)
	case "devnet":
		return cmdDevnet(ctx, rest, stdout, stderr)
	case "simnet":
		return cmdSimnet(ctx, rest, stdout, stderr)
	case "find":
		return cmdFind(ctx, rest, stdout, stderr)
	case "indexers":
		return cmdIndexers(ctx, rest, stdout, stderr)
	case "connect":
		return cmdConnect(ctx, rest, stdout, stderr)
	case "keys":
		return cmdKeys(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "rendermesh", node.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rendermesh "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseErr turns a flag parsing error into a usage error.
func parseErr(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
