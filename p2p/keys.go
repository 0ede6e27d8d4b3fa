package p2p

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// ContainerRecordNamespace is the DHT namespace of signed container records: /rm-container/<peerID>.
const ContainerRecordNamespace = "rm-container"

// ContainerRecordKey is the DHT key of a container's capability record.
func ContainerRecordKey(id peer.ID) string {
	return "/" + ContainerRecordNamespace + "/" + string(id)
}

// ErrCapability is wrapped by errors about malformed capability keys.
var ErrCapability = errors.New("p2p: invalid capability key")

// Capability kinds advertised as provider records.
const (
	CapGPU    = "gpu"
	CapRegion = "region"
	CapApp    = "app"
	// CapRelay is provided by relay-capable nodes under RelayKey.
	CapRelay = "relay"
)

// RelayKey is the capability key relay nodes provide: indexers find relays by it.
const RelayKey = CapRelay + ":turn"

// CapabilityKey builds a capability key such as "gpu:H100", "region:u33" or "app:demo".
func CapabilityKey(kind, value string) string { return kind + ":" + value }

// CapabilityCID maps a capability key to the content ID its providers are recorded under. The key is
// validated first: a kind of gpu, region, app or relay and a value of 1..64 printable, non-space characters.
func CapabilityCID(key string) (cid.Cid, error) {
	kind, value, ok := strings.Cut(key, ":")
	if !ok || (kind != CapGPU && kind != CapRegion && kind != CapApp && kind != CapRelay) {
		return cid.Undef, fmt.Errorf("%w: %q: want gpu:<model>, region:<geohash prefix>, app:<name> or relay:turn", ErrCapability, key)
	}
	if len(value) == 0 || len(value) > 64 {
		return cid.Undef, fmt.Errorf("%w: %q: value must be 1 to 64 characters", ErrCapability, key)
	}
	for _, r := range value {
		if r <= ' ' || r > '~' {
			return cid.Undef, fmt.Errorf("%w: %q: value must be printable ASCII without spaces", ErrCapability, key)
		}
	}
	h, err := mh.Sum([]byte("/rendermesh/capability/1/"+key), mh.SHA2_256, -1)
	if err != nil {
		return cid.Undef, fmt.Errorf("p2p: hash capability %q: %w", key, err)
	}
	return cid.NewCidV1(cid.Raw, h), nil
}
