package node

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rendermesh/rendermesh/roles/container"
)

// Config is a node's configuration. It comes from, in increasing precedence: Default, a TOML file,
// RENDERMESH_* environment variables, and command-line flags (see Load).
type Config struct {
	DataDir string   `toml:"data_dir"`
	Roles   []string `toml:"roles"` // roles besides being a full node: "container", "checker"

	Log       LogConfig       `toml:"log"`
	Admin     AdminConfig     `toml:"admin"`
	P2P       P2PConfig       `toml:"p2p"`
	Container ContainerConfig `toml:"container"`
	Render    RenderConfig    `toml:"render"`
	Relay     RelayConfig     `toml:"relay"`
	Checker   CheckerConfig   `toml:"checker"`
	Network   NetworkConfig   `toml:"network"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// AdminConfig configures the admin HTTP listener (/healthz, /metrics, /v1/...).
type AdminConfig struct {
	Listen string `toml:"listen"` // host:port, loopback by default; "" disables it
}

// P2PConfig configures networking.
type P2PConfig struct {
	Listen           []string `toml:"listen"`
	Announce         []string `toml:"announce"`
	Bootstrap        []string `toml:"bootstrap"`
	BootstrapTimeout Duration `toml:"bootstrap_timeout"`
	ConnLow          int      `toml:"conn_low"`
	ConnHigh         int      `toml:"conn_high"`
	ResourceMemory   int      `toml:"resource_memory_mib"`
	ResourceFDs      int      `toml:"resource_fds"`
	// ServeRegions are the regions whose heartbeats this node carries (a container always carries
	// its own region's).
	ServeRegions []string `toml:"serve_regions"`
}

// ContainerConfig configures the container role.
type ContainerConfig struct {
	Region            string   `toml:"region"`
	Geohash           string   `toml:"geohash"`
	Latitude          *float64 `toml:"latitude"`
	Longitude         *float64 `toml:"longitude"`
	Apps              []string `toml:"apps"`
	SessionFee        string   `toml:"session_fee"` // ask per 15-minute session, in tokens, e.g. "0.25"
	RecordTTL         Duration `toml:"record_ttl"`
	ProvideInterval   Duration `toml:"provide_interval"`
	HeartbeatInterval Duration `toml:"heartbeat_interval"`
	// ReceiptInterval is how often a session's usage receipt is co-signed. The network's rule is a
	// minute, at most; shorter only for tests and demos.
	ReceiptInterval Duration `toml:"receipt_interval"`
	// DevAutoCheck passes the registration check without a checker. For devnet only.
	DevAutoCheck bool `toml:"dev_autocheck"`
}

// Duration is a time.Duration written as "90s" or "15m" in TOML.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Known roles.
const (
	RoleContainer = "container"
	RoleChecker   = "checker"
)

var knownRoles = []string{RoleContainer, RoleChecker}

// Default returns the configuration of a full node with no extra role, listening on TCP and QUIC
// port 4001, its admin listener on 127.0.0.1:9464.
func Default() Config {
	return Config{
		DataDir: defaultDataDir(),
		Log:     LogConfig{Level: "info", Format: "text"},
		Admin:   AdminConfig{Listen: "127.0.0.1:9464"},
		P2P: P2PConfig{
			Listen:           []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
			BootstrapTimeout: Duration(30 * time.Second),
			ConnLow:          64,
			ConnHigh:         192,
			ResourceMemory:   512,
			ResourceFDs:      1024,
		},
		Network: DefaultNetwork(),
		Container: ContainerConfig{
			Apps:              []string{"demo"},
			SessionFee:        "0.25",
			RecordTTL:         Duration(container.DefaultRecordTTL),
			ProvideInterval:   Duration(container.DefaultProvideInterval),
			HeartbeatInterval: Duration(container.DefaultHeartbeatInterval),
			ReceiptInterval:   Duration(time.Minute),
		},
		Render:  RenderConfig{Width: 1280, Height: 720, FPS: 30, MaxBitrateKbps: 8000},
		Relay:   RelayConfig{Listen: "0.0.0.0:3478", MaxTTL: Duration(2 * time.Hour)},
		Checker: DefaultChecker(),
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "rendermesh")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".rendermesh")
	}
	return ".rendermesh"
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("config")

// HasRole reports whether the node runs a role.
func (c *Config) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: data_dir is empty: set --data-dir", ErrConfig)
	}
	for _, r := range c.Roles {
		if !slices.Contains(knownRoles, r) {
			return fmt.Errorf("%w: unknown role %q: known roles are %s", ErrConfig, r, strings.Join(knownRoles, ", "))
		}
	}
	if _, err := newLogger(c.Log, os.Stderr); err != nil {
		return err
	}
	if len(c.P2P.Listen) == 0 {
		return fmt.Errorf("%w: no p2p listen address: set --listen, e.g. /ip4/0.0.0.0/tcp/4001", ErrConfig)
	}
	if c.P2P.ConnLow <= 0 || c.P2P.ConnHigh < c.P2P.ConnLow {
		return fmt.Errorf("%w: p2p.conn_low (%d) must be positive and at most p2p.conn_high (%d)", ErrConfig, c.P2P.ConnLow, c.P2P.ConnHigh)
	}
	if c.P2P.ResourceMemory < 64 || c.P2P.ResourceFDs < 64 {
		return fmt.Errorf("%w: p2p.resource_memory_mib and p2p.resource_fds must be at least 64", ErrConfig)
	}
	for _, r := range c.P2P.ServeRegions {
		if !container.ValidRegion(r) {
			return fmt.Errorf("%w: serve region %q: want a region code such as eu-west", ErrConfig, r)
		}
	}
	if _, err := c.Network.EpochConfig(nil); err != nil {
		return err
	}
	if err := c.Relay.validate(); err != nil {
		return err
	}
	if c.HasRole(RoleChecker) {
		if !c.Network.Elections() {
			return fmt.Errorf("%w: the checker role needs the network's epochs: set network.genesis_time", ErrConfig)
		}
		if err := c.Checker.Validate(); err != nil {
			return err
		}
	}
	if c.HasRole(RoleContainer) {
		cc := &c.Container
		if (cc.Latitude == nil) != (cc.Longitude == nil) {
			return fmt.Errorf("%w: container: set both latitude and longitude, or neither", ErrConfig)
		}
		if cc.Latitude != nil && (math.Abs(*cc.Latitude) > 90 || math.Abs(*cc.Longitude) > 180) {
			return fmt.Errorf("%w: container: latitude must be within ±90 and longitude within ±180", ErrConfig)
		}
		if cc.Region == "" {
			return fmt.Errorf("%w: container: no region: set --region (e.g. eu-west)", ErrConfig)
		}
		if cc.Geohash == "" && cc.Latitude == nil {
			return fmt.Errorf("%w: container: no location: set --geohash (e.g. u33dc0) or --lat and --lon", ErrConfig)
		}
		if cc.ReceiptInterval < Duration(time.Second) || cc.ReceiptInterval > Duration(ReceiptInterval) {
			return fmt.Errorf("%w: container.receipt_interval is %v: it must be 1s to 1m (the network's rule is 1m; checkers take a renewed session's samples only with a recent receipt)",
				ErrConfig, time.Duration(cc.ReceiptInterval))
		}
		if _, err := ParseAmount(cc.SessionFee); err != nil {
			return fmt.Errorf("%w: container: session_fee: %v", ErrConfig, err)
		}
		if err := c.Render.validate(); err != nil {
			return err
		}
	}
	return nil
}

// Location returns the container's geohash (from the config, or computed from its coordinates at
// precision 8) and its coordinates in degrees * 1e6, when set.
func (cc *ContainerConfig) Location() (string, *[2]int32) {
	var ll *[2]int32
	if cc.Latitude != nil && cc.Longitude != nil {
		ll = &[2]int32{int32(math.Round(*cc.Latitude * 1e6)), int32(math.Round(*cc.Longitude * 1e6))}
	}
	gh := strings.ToLower(cc.Geohash)
	if gh == "" && ll != nil {
		gh = container.EncodeGeohash(ll[0], ll[1], 8)
	}
	return gh, ll
}

// ParseAmount parses a token amount such as "0.25" into micro-units (250000), exactly.
func ParseAmount(s string) (uint64, error) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" && frac == "" || len(frac) > 6 || strings.ContainsAny(whole+frac, "+-") {
		return 0, fmt.Errorf("amount %q: want a non-negative decimal with at most 6 decimals, e.g. 0.25", s)
	}
	w, err := strconv.ParseUint(cmpOr(whole, "0"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: want a non-negative decimal with at most 6 decimals, e.g. 0.25", s)
	}
	f := uint64(0)
	if frac != "" {
		if f, err = strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 64); err != nil {
			return 0, fmt.Errorf("amount %q: want a non-negative decimal with at most 6 decimals, e.g. 0.25", s)
		}
	}
	if w > (math.MaxUint64-f)/1_000_000 {
		return 0, fmt.Errorf("amount %q: too large", s)
	}
	return w*1_000_000 + f, nil
}

// FormatAmount prints micro-units as a decimal token amount.
func FormatAmount(micros uint64) string {
	s := fmt.Sprintf("%d.%06d", micros/1_000_000, micros%1_000_000)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// BindFlags defines the node's flags on fs, writing into cfg when set.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory: identity key, datastore, state")
	fs.Var(listFlag{&cfg.Roles}, "roles", "comma-separated roles besides full node: container, checker")
	fs.StringVar(&cfg.Log.Level, "log-level", cfg.Log.Level, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.Log.Format, "log-format", cfg.Log.Format, "log format: text or json")
	fs.StringVar(&cfg.Admin.Listen, "admin", cfg.Admin.Listen, "admin HTTP listen address (healthz, metrics); empty disables")
	fs.Var(listFlag{&cfg.P2P.Listen}, "listen", "comma-separated p2p listen multiaddrs")
	fs.Var(listFlag{&cfg.P2P.Announce}, "announce", "comma-separated multiaddrs to announce instead of the listen addresses")
	fs.Var(listFlag{&cfg.P2P.Bootstrap}, "bootstrap", "comma-separated bootstrap peers, /ip4/.../tcp/.../p2p/<peer ID>")
	fs.Var((*durationFlag)(&cfg.P2P.BootstrapTimeout), "bootstrap-timeout", "give up joining through the bootstrap peers after this long")
	fs.Var(listFlag{&cfg.P2P.ServeRegions}, "serve-regions", "comma-separated regions whose heartbeats this node carries")
	fs.StringVar(&cfg.Container.Region, "region", cfg.Container.Region, "container: region code, e.g. eu-west")
	fs.StringVar(&cfg.Container.Geohash, "geohash", cfg.Container.Geohash, "container: location as a geohash, e.g. u33dc0")
	fs.Var(floatPtrFlag{&cfg.Container.Latitude}, "lat", "container: latitude in degrees (optional)")
	fs.Var(floatPtrFlag{&cfg.Container.Longitude}, "lon", "container: longitude in degrees (optional)")
	fs.Var(listFlag{&cfg.Container.Apps}, "apps", "container: comma-separated pre-installed apps")
	fs.StringVar(&cfg.Container.SessionFee, "fee", cfg.Container.SessionFee, "container: ask per 15-minute session, in tokens")
	fs.Var((*durationFlag)(&cfg.Container.RecordTTL), "record-ttl", "container: capability record lifetime")
	fs.Var((*durationFlag)(&cfg.Container.HeartbeatInterval), "heartbeat-interval", "container: heartbeat period")
	fs.Var((*durationFlag)(&cfg.Container.ReceiptInterval), "receipt-interval", "container: how often a session's usage receipt is co-signed (the network's rule is 1m)")
	fs.BoolVar(&cfg.Container.DevAutoCheck, "dev-autocheck", cfg.Container.DevAutoCheck, "devnet only: pass the registration check without a checker")
	fs.Var(listFlag{&cfg.Render.PublicIPs}, "public-ips", "container: comma-separated public IPs to advertise as WebRTC host candidates (1:1 NAT)")
	fs.Var(listFlag{&cfg.Render.Source}, "render-source", "container: comma-separated argv of a command writing raw I420 frames (default: the built-in scene)")
	fs.BoolVar(&cfg.Render.Loopback, "render-loopback", cfg.Render.Loopback, "container: offer loopback ICE candidates (consumers on this machine)")
	fs.BoolVar(&cfg.Relay.Enabled, "relay", cfg.Relay.Enabled, "run a TURN relay for render sessions (needs --relay-public-ip, or --relay-urls)")
	fs.StringVar(&cfg.Relay.Listen, "relay-listen", cfg.Relay.Listen, "relay: the embedded TURN server's UDP address")
	fs.StringVar(&cfg.Relay.PublicIP, "relay-public-ip", cfg.Relay.PublicIP, "relay: the IPv4 address clients reach the relay at")
	fs.Var(listFlag{&cfg.Relay.URLs}, "relay-urls", "relay: an external TURN server (coturn with use-auth-secret) instead of the embedded one")
	fs.StringVar(&cfg.Relay.Secret, "relay-secret", cfg.Relay.Secret, "relay: the TURN REST secret (coturn's static-auth-secret); prefer the environment variable")
}

// EnvPrefix prefixes the environment variable of every flag: --data-dir is RENDERMESH_DATA_DIR.
const EnvPrefix = "RENDERMESH_"

// EnvName is the environment variable that sets a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load builds the configuration: defaults, then the TOML file (--config or RENDERMESH_CONFIG), then
// RENDERMESH_* variables, then the flags given in args, and validates it. It returns the remaining
// arguments. lookupEnv is os.LookupEnv outside tests.
func Load(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (Config, []string, error) {
	cfg := Default()
	var path string
	fs.StringVar(&path, "config", "", "TOML configuration file (env "+EnvName("config")+")")
	BindFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	explicit := map[string]string{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = f.Value.String() })

	// Start again from the defaults, layering file, environment and flags in order.
	cfg = Default()
	if path == "" {
		path, _ = lookupEnv(EnvName("config"))
	}
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return cfg, nil, err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || err != nil {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%w: %s=%q: %v", ErrConfig, EnvName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return cfg, nil, err
	}
	for name, v := range explicit {
		if name != "config" {
			if e := fs.Set(name, v); e != nil {
				return cfg, nil, fmt.Errorf("%w: --%s=%q: %v", ErrConfig, name, v, e)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	return cfg, fs.Args(), nil
}

func loadFile(path string, cfg *Config) error {
	md, err := toml.DecodeFile(path, cfg)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: file %s does not exist: check --config", ErrConfig, path)
	}
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%w: %s: line %d: %s", ErrConfig, path, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return fmt.Errorf("%w: %s: unknown setting %q: check its spelling against docs/CONFIG.md", ErrConfig, path, keys[0].String())
	}
	return nil
}

// listFlag is a comma-separated list; setting it replaces the list.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(s string) error {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	*l.p = out
	return nil
}

type durationFlag Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }
func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationFlag(v)
	return nil
}

type floatPtrFlag struct{ p **float64 }

func (f floatPtrFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return strconv.FormatFloat(**f.p, 'f', -1, 64)
}

func (f floatPtrFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*f.p = &v
	return nil
}

// CheckerConfig configures the checker role.
type CheckerConfig struct {
	// PerContainer is how many checkers the epoch's randomness assigns to each container: all of
	// them check it at registration and after a failure, the first of them at random in standby.
	PerContainer int `toml:"per_container"`
	// RandomEvery: a container in standby gets a random check every RandomEvery epochs on average
	// (1: every epoch).
	RandomEvery int `toml:"random_every"`
	// Methods are the checks run on a container: "telemetry" (its signed NVML readings) and
	// "simulation" (a render session on a challenge).
	Methods []string `toml:"methods"`
	// Width, Height and FPS are the challenge stream's; CheckFor how long it is watched.
	Width    int      `toml:"width"`
	Height   int      `toml:"height"`
	FPS      int      `toml:"fps"`
	CheckFor Duration `toml:"check_for"`
	// Recheck is the least time between two checks of one container outside the random schedule
	// (registration, needs_recheck).
	Recheck Duration `toml:"recheck"`
	// Concurrent bounds the checks this node runs at once.
	Concurrent int `toml:"concurrent"`
}

// Check methods.
const (
	MethodTelemetry  = "telemetry"
	MethodSimulation = "simulation"
)

// DefaultChecker is the checker role's default configuration.
func DefaultChecker() CheckerConfig {
	return CheckerConfig{
		PerContainer: 2, RandomEvery: 1, Methods: []string{MethodTelemetry, MethodSimulation},
		Width: 320, Height: 180, FPS: 30, CheckFor: Duration(3 * time.Second),
		Recheck: Duration(30 * time.Second), Concurrent: 2,
	}
}

// Validate checks the checker role's configuration.
func (c *CheckerConfig) Validate() error {
	switch {
	case c.PerContainer < 1 || c.PerContainer > MaxPerContainer:
		return fmt.Errorf("%w: checker.per_container must be 1 to %d (got %d)", ErrConfig, MaxPerContainer, c.PerContainer)
	case c.RandomEvery < 1:
		return fmt.Errorf("%w: checker.random_every must be at least 1 (got %d)", ErrConfig, c.RandomEvery)
	case len(c.Methods) == 0:
		return fmt.Errorf("%w: checker.methods is empty: want %q, %q or both", ErrConfig, MethodTelemetry, MethodSimulation)
	case c.Width < 256 || c.Height < 64 || c.Width%2 != 0 || c.Height%2 != 0 || c.Width > 1920 || c.Height > 1080:
		return fmt.Errorf("%w: checker: the challenge must be even-sized, 256x64 to 1920x1080 (got %dx%d): its frames carry a 256-pixel stamp", ErrConfig, c.Width, c.Height)
	case c.FPS < 5 || c.FPS > 120:
		return fmt.Errorf("%w: checker.fps must be 5 to 120 (got %d)", ErrConfig, c.FPS)
	case c.CheckFor < Duration(time.Second) || c.CheckFor > Duration(time.Minute):
		return fmt.Errorf("%w: checker.check_for must be 1s to 1m (got %v)", ErrConfig, time.Duration(c.CheckFor))
	case c.Recheck < Duration(time.Second):
		return fmt.Errorf("%w: checker.recheck must be at least 1s", ErrConfig)
	case c.Concurrent < 1 || c.Concurrent > 64:
		return fmt.Errorf("%w: checker.concurrent must be 1 to 64 (got %d)", ErrConfig, c.Concurrent)
	}
	for _, m := range c.Methods {
		if m != MethodTelemetry && m != MethodSimulation {
			return fmt.Errorf("%w: checker.methods: unknown method %q: want %q or %q", ErrConfig, m, MethodTelemetry, MethodSimulation)
		}
	}
	return nil
}
