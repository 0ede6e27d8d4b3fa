package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults for the Config fields left zero.
const (
	DefaultRealm          = "rendermesh"
	DefaultMaxAllocations = 1000
)

// ErrConfig is wrapped by every configuration error Listen returns.
var ErrConfig = errors.New("turn: config")

// Config configures an embedded TURN relay. Zero fields take the defaults noted.
type Config struct {
	// ListenUDP is the UDP address clients reach the relay on, e.g. "0.0.0.0:3478" or
	// "127.0.0.1:0". ListenTCP adds TURN over TCP (clients' leg only; relayed traffic is UDP).
	// At least one of the two is required.
	//
	// On a host with several addresses, a UDP socket on 0.0.0.0 answers from whichever address
	// the kernel picks for the route back, not necessarily the one the client asked; STUN
	// clients (pion's server-reflexive gathering) drop such answers and wait out their timeout.
	// There, listen on the address clients use.
	ListenUDP string
	ListenTCP string
	// RelayIP is the IPv4 address put in relayed candidates: the node's public IP. Required.
	RelayIP net.IP
	// RelayBind is the IP relay sockets bind to. Default: RelayIP when it is an address of this
	// host, otherwise (RelayIP is a NAT's address) the unspecified address.
	RelayBind string
	// Realm defaults to DefaultRealm. Credentials do not depend on it; clients learn it from the
	// server.
	Realm string
	// Secret is the shared TURN REST secret (coturn's static-auth-secret). Required.
	Secret []byte
	// SecretFor, when set, gives the secret for a username instead of Secret: a relay that derives
	// one secret per credential issuer (rendermesh's relays derive one per indexer and epoch).
	// An error refuses the username.
	SecretFor func(username string) ([]byte, error)
	// PortMin and PortMax bound the relay ports (inclusive). Both zero: any free port.
	PortMin, PortMax uint16
	// MaxAllocations caps the live allocations; further Allocate requests get 486 (Allocation
	// Quota Reached). Default DefaultMaxAllocations.
	MaxAllocations int
	// Now is the clock credentials are checked against. Default time.Now.
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// withDefaults returns cfg with its zero fields set and checks it. Errors wrap ErrConfig and say
// what to fix.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Secret) == 0 {
		return cfg, fmt.Errorf("%w: Secret is empty: set the shared TURN REST secret (coturn's static-auth-secret)", ErrConfig)
	}
	if cfg.ListenUDP == "" && cfg.ListenTCP == "" {
		return cfg, fmt.Errorf("%w: no listener: set ListenUDP (e.g. \"0.0.0.0:3478\") and/or ListenTCP", ErrConfig)
	}
	if cfg.ListenUDP != "" {
		if _, err := net.ResolveUDPAddr("udp", cfg.ListenUDP); err != nil {
			return cfg, fmt.Errorf("%w: ListenUDP %q: want host:port, e.g. \"0.0.0.0:3478\": %v", ErrConfig, cfg.ListenUDP, err)
		}
	}
	if cfg.ListenTCP != "" {
		if _, err := net.ResolveTCPAddr("tcp", cfg.ListenTCP); err != nil {
			return cfg, fmt.Errorf("%w: ListenTCP %q: want host:port, e.g. \"0.0.0.0:3478\": %v", ErrConfig, cfg.ListenTCP, err)
		}
	}
	switch {
	case cfg.RelayIP == nil:
		return cfg, fmt.Errorf("%w: RelayIP is missing: set the node's public IPv4 address, the one peers send relayed traffic to", ErrConfig)
	case cfg.RelayIP.To4() == nil:
		return cfg, fmt.Errorf("%w: RelayIP %v is not IPv4: relayed candidates are IPv4 only", ErrConfig, cfg.RelayIP)
	case cfg.RelayIP.IsUnspecified():
		return cfg, fmt.Errorf("%w: RelayIP %v is unspecified: set the address peers can reach", ErrConfig, cfg.RelayIP)
	}
	cfg.RelayIP = cfg.RelayIP.To4()
	if cfg.RelayBind != "" {
		ip := net.ParseIP(cfg.RelayBind)
		if ip == nil || ip.To4() == nil {
			return cfg, fmt.Errorf("%w: RelayBind %q is not an IPv4 address (no port): leave it empty to derive it", ErrConfig, cfg.RelayBind)
		}
	}
	switch {
	case (cfg.PortMin == 0) != (cfg.PortMax == 0):
		return cfg, fmt.Errorf("%w: relay port range %d-%d: set both PortMin and PortMax, or neither", ErrConfig, cfg.PortMin, cfg.PortMax)
	case cfg.PortMin > cfg.PortMax:
		return cfg, fmt.Errorf("%w: relay port range %d-%d: PortMin is above PortMax", ErrConfig, cfg.PortMin, cfg.PortMax)
	}
	switch {
	case cfg.MaxAllocations < 0:
		return cfg, fmt.Errorf("%w: MaxAllocations %d is negative: use 0 for the default (%d)", ErrConfig, cfg.MaxAllocations, DefaultMaxAllocations)
	case cfg.MaxAllocations == 0:
		cfg.MaxAllocations = DefaultMaxAllocations
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	return cfg, nil
}
