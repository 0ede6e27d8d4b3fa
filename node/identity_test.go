package node

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func peerIDOf(t *testing.T, key crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// writeKeyFile writes data with exactly mode, whatever the umask.
func writeKeyFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), IdentityFile)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIdentityCreatedPrivateAndStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), IdentityFile)
	key, err := LoadOrCreateIdentity(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key.Type() != crypto.Ed25519 {
		t.Errorf("created a %s key, want Ed25519", key.Type())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", perm)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("data directory holds %d entries, want only the key (no temporary files left)", len(entries))
	}

	again, err := LoadOrCreateIdentity(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := peerIDOf(t, key), peerIDOf(t, again); a != b {
		t.Errorf("reloaded key has peer ID %s, want %s", b, a)
	}
}

func TestIdentityRefusesReadableKey(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := writeKeyFile(t, data, 0o644)
	_, err = LoadOrCreateIdentity(path, nil)
	if err == nil {
		t.Fatal("a key file readable by others was accepted")
	}
	for _, want := range []string{"chmod 600", path, "0644"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	// The file is left as it was: the operator fixes it.
	if b, _ := os.ReadFile(path); string(b) != string(data) {
		t.Error("the refused key file was changed")
	}
}

func TestIdentityRefusesGarbage(t *testing.T) {
	path := writeKeyFile(t, []byte("this is not a key\n"), 0o600)
	_, err := LoadOrCreateIdentity(path, nil)
	if err == nil {
		t.Fatal("garbage was accepted as a key")
	}
	for _, want := range []string{path, "not a valid key", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestIdentityRefusesNonEd25519(t *testing.T) {
	key, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := writeKeyFile(t, data, 0o600)
	_, err = LoadOrCreateIdentity(path, nil)
	if err == nil {
		t.Fatal("a secp256k1 key was accepted")
	}
	for _, want := range []string{path, "Secp256k1", "Ed25519"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
