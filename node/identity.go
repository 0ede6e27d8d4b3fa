package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the node's Ed25519 key, inside the data directory.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity reads the node's key from path, or creates one (from rnd, crypto/rand when
// nil) and writes it with mode 0600. A key file that others can read is refused, as ssh does.
func LoadOrCreateIdentity(path string, rnd io.Reader) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createIdentity(path, rnd)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s is accessible by other users (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity: %s is not a valid key (%v): restore it from a backup, or move it away to create a new identity", path, err)
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity: %s holds a %s key; rendermesh needs Ed25519", path, key.Type())
	}
	return key, nil
}

func createIdentity(path string, rnd io.Reader) (crypto.PrivKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	key, _, err := crypto.GenerateEd25519Key(rnd)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	return key, nil
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it over path, so a crash
// never leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
