package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// DatastoreDir is the pebble datastore, inside the data directory.
const DatastoreDir = "datastore"

// openDatastore opens the node's pebble datastore. cacheBytes sizes its block cache; small
// memtables keep many in-process nodes (devnet) light.
func openDatastore(dataDir string, cacheBytes int64, small bool) (*pebbleds.Datastore, error) {
	path := filepath.Join(dataDir, DatastoreDir)
	opts := []pebbleds.Option{pebbleds.WithCacheSize(cacheBytes)}
	if small {
		opts = append(opts, pebbleds.WithPebbleOpts(&pebble.Options{MemTableSize: 1 << 20}))
	}
	d, err := pebbleds.NewDatastore(path, opts...)
	if err != nil {
		return nil, fmt.Errorf("datastore %s: %w (is the disk full or the directory unwritable?)", path, err)
	}
	return d, nil
}

// kvStore gives a role a durable key-value space under a prefix of the datastore.
type kvStore struct {
	d      ds.Datastore
	prefix string
}

func (s kvStore) key(k string) ds.Key { return ds.NewKey(s.prefix).ChildString(k) }

func (s kvStore) Get(ctx context.Context, k string) ([]byte, bool, error) {
	v, err := s.d.Get(ctx, s.key(k))
	if errors.Is(err, ds.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// Put writes and syncs: pebble writes are not synced by default, and role state must survive a crash.
func (s kvStore) Put(ctx context.Context, k string, v []byte) error {
	if err := s.d.Put(ctx, s.key(k), v); err != nil {
		return err
	}
	return s.d.Sync(ctx, s.key(k))
}
