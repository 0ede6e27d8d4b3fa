package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/node"
)

func cmdKeys(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys", stderr)
	dir := fs.String("data-dir", envOr(node.EnvName("data-dir"), node.Default().DataDir), "data directory holding identity.key")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	path := filepath.Join(*dir, node.IdentityFile)
	_, statErr := os.Stat(path)
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("data directory %s: %w", *dir, err)
	}
	key, err := node.LoadOrCreateIdentity(path, nil)
	if err != nil {
		return err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	if statErr != nil {
		fmt.Fprintf(stderr, "created a new identity in %s\n", path)
	}
	fmt.Fprintln(stdout, id)
	return nil
}
