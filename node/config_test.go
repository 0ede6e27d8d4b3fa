package node

import (
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeEnv is a lookupEnv over a map, so that tests never read the real environment.
func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// load runs Load on a fresh flag set that stays silent on errors.
func load(t *testing.T, args []string, env map[string]string) (Config, []string, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, fakeEnv(env))
}

// writeConfig writes a TOML file into a temporary directory and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rendermesh.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkUserError asserts what every error shown to a user must be: a config error, on one line,
// containing each of the fragments.
func checkUserError(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", fragments)
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("error %q does not wrap ErrConfig", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDefaultValidates(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	if cfg.HasRole(RoleContainer) {
		t.Error("a default node runs the container role; want a plain full node")
	}
}

func TestLoadWithoutAnythingIsDefault(t *testing.T) {
	cfg, rest, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Errorf("rest = %q, want none", rest)
	}
	def := Default()
	if cfg.DataDir != def.DataDir || cfg.Admin != def.Admin || cfg.Log != def.Log ||
		!slices.Equal(cfg.P2P.Listen, def.P2P.Listen) || cfg.P2P.BootstrapTimeout != def.P2P.BootstrapTimeout {
		t.Errorf("Load with nothing set = %+v, want the defaults %+v", cfg, def)
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := writeConfig(t, `
data_dir = "/from/file"

[log]
level = "warn"

[p2p]
bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/file"]
bootstrap_timeout = "10s"

[container]
record_ttl = "20m"
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string

		dataDir   string
		level     string
		bootstrap []string
		timeout   time.Duration
		ttl       time.Duration
	}{
		{
			name:    "defaults",
			dataDir: Default().DataDir, level: "info", timeout: 30 * time.Second, ttl: time.Hour,
		},
		{
			name: "file over defaults", args: []string{"--config", file},
			dataDir: "/from/file", level: "warn", bootstrap: []string{"/ip4/10.0.0.1/tcp/4001/p2p/file"},
			timeout: 10 * time.Second, ttl: 20 * time.Minute,
		},
		{
			name:    "file named by RENDERMESH_CONFIG",
			env:     map[string]string{"RENDERMESH_CONFIG": file},
			dataDir: "/from/file", level: "warn", bootstrap: []string{"/ip4/10.0.0.1/tcp/4001/p2p/file"},
			timeout: 10 * time.Second, ttl: 20 * time.Minute,
		},
		{
			name: "env over file", args: []string{"--config", file},
			env: map[string]string{
				"RENDERMESH_DATA_DIR":   "/from/env",
				"RENDERMESH_BOOTSTRAP":  "/ip4/10.0.0.2/tcp/4001/p2p/env1, /ip4/10.0.0.3/tcp/4001/p2p/env2",
				"RENDERMESH_RECORD_TTL": "5m",
			},
			dataDir: "/from/env", level: "warn",
			bootstrap: []string{"/ip4/10.0.0.2/tcp/4001/p2p/env1", "/ip4/10.0.0.3/tcp/4001/p2p/env2"},
			timeout:   10 * time.Second, ttl: 5 * time.Minute,
		},
		{
			name: "flags over env over file",
			args: []string{"--data-dir", "/from/flag", "--bootstrap", "/ip4/10.0.0.4/tcp/4001/p2p/flag",
				"--log-level", "debug", "--bootstrap-timeout", "3s"},
			env: map[string]string{
				"RENDERMESH_CONFIG":     file,
				"RENDERMESH_DATA_DIR":   "/from/env",
				"RENDERMESH_BOOTSTRAP":  "/ip4/10.0.0.2/tcp/4001/p2p/env1",
				"RENDERMESH_LOG_LEVEL":  "error",
				"RENDERMESH_RECORD_TTL": "5m",
			},
			dataDir: "/from/flag", level: "debug", bootstrap: []string{"/ip4/10.0.0.4/tcp/4001/p2p/flag"},
			timeout: 3 * time.Second, ttl: 5 * time.Minute,
		},
		{
			name:    "--config wins over RENDERMESH_CONFIG",
			args:    []string{"--config", file},
			env:     map[string]string{"RENDERMESH_CONFIG": "/nonexistent/rendermesh.toml"},
			dataDir: "/from/file", level: "warn", bootstrap: []string{"/ip4/10.0.0.1/tcp/4001/p2p/file"},
			timeout: 10 * time.Second, ttl: 20 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := load(t, tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DataDir != tt.dataDir {
				t.Errorf("data_dir = %q, want %q", cfg.DataDir, tt.dataDir)
			}
			if cfg.Log.Level != tt.level {
				t.Errorf("log.level = %q, want %q", cfg.Log.Level, tt.level)
			}
			if !slices.Equal(cfg.P2P.Bootstrap, tt.bootstrap) {
				t.Errorf("p2p.bootstrap = %q, want %q", cfg.P2P.Bootstrap, tt.bootstrap)
			}
			if got := time.Duration(cfg.P2P.BootstrapTimeout); got != tt.timeout {
				t.Errorf("p2p.bootstrap_timeout = %s, want %s", got, tt.timeout)
			}
			if got := time.Duration(cfg.Container.RecordTTL); got != tt.ttl {
				t.Errorf("container.record_ttl = %s, want %s", got, tt.ttl)
			}
		})
	}
}

func TestLoadContainerFromFlags(t *testing.T) {
	cfg, rest, err := load(t, []string{"--roles", "container", "--region", "eu-west", "--lat", "48.8566",
		"--lon", "2.3522", "--apps", "demo,blender", "--fee", "1.5", "extra"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rest, []string{"extra"}) {
		t.Errorf("rest = %q, want [extra]", rest)
	}
	if !cfg.HasRole(RoleContainer) || cfg.Container.Region != "eu-west" ||
		!slices.Equal(cfg.Container.Apps, []string{"demo", "blender"}) || cfg.Container.SessionFee != "1.5" {
		t.Errorf("container config = %+v", cfg.Container)
	}
	if cfg.Container.Latitude == nil || *cfg.Container.Latitude != 48.8566 ||
		cfg.Container.Longitude == nil || *cfg.Container.Longitude != 2.3522 {
		t.Errorf("lat/lon = %v/%v, want 48.8566/2.3522", cfg.Container.Latitude, cfg.Container.Longitude)
	}
}

func TestLoadErrors(t *testing.T) {
	unknownKey := writeConfig(t, "data_dir = \"/x\"\n\n[p2p]\nlisten_addrs = [\"/ip4/0.0.0.0/tcp/1\"]\n")
	syntax := writeConfig(t, "data_dir = \"/x\"\n[log]\nlevel = \n")
	wrongType := writeConfig(t, "[p2p]\nconn_low = \"many\"\n")
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		fragments []string
	}{
		{"unknown key", []string{"--config", unknownKey}, nil, []string{unknownKey, "p2p.listen_addrs"}},
		{"syntax error", []string{"--config", syntax}, nil, []string{syntax, "line 3"}},
		{"wrong type", []string{"--config", wrongType}, nil, []string{wrongType}},
		{"missing file", []string{"--config", "/nonexistent/rendermesh.toml"}, nil,
			[]string{"/nonexistent/rendermesh.toml", "does not exist"}},
		{"missing file from env", nil, map[string]string{"RENDERMESH_CONFIG": "/nonexistent/env.toml"},
			[]string{"/nonexistent/env.toml", "does not exist"}},
		{"bad env value", nil, map[string]string{"RENDERMESH_RECORD_TTL": "abc"},
			[]string{"RENDERMESH_RECORD_TTL", "abc"}},
		{"bad env float", nil, map[string]string{"RENDERMESH_LAT": "north"}, []string{"RENDERMESH_LAT"}},
		{"invalid result", []string{"--roles", "gpu"}, nil, []string{`"gpu"`}},
		{"container without region", []string{"--roles", "container", "--geohash", "u09tvw"}, nil,
			[]string{"--region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.args, tt.env)
			checkUserError(t, err, tt.fragments...)
		})
	}
}

func TestLoadBadFlag(t *testing.T) {
	// Flag syntax errors come from the flag package; the command turns them into usage errors.
	if _, _, err := load(t, []string{"--bootstrap-timeout", "soon"}, nil); err == nil {
		t.Fatal("Load accepted --bootstrap-timeout soon")
	}
	if _, _, err := load(t, []string{"--no-such-flag"}, nil); err == nil {
		t.Fatal("Load accepted an unknown flag")
	}
}

// containerConfig is a valid configuration of a container node.
func containerConfig() Config {
	cfg := Default()
	cfg.Roles = []string{RoleContainer}
	cfg.Container.Region = "eu-west"
	cfg.Container.Geohash = "u09tvw"
	return cfg
}

func TestValidate(t *testing.T) {
	if cfg := containerConfig(); cfg.Validate() != nil {
		t.Fatalf("the base container config is invalid: %v", cfg.Validate())
	}
	tests := []struct {
		name      string
		edit      func(*Config)
		fragments []string
	}{
		{"empty data dir", func(c *Config) { c.DataDir = "" }, []string{"--data-dir"}},
		{"unknown role", func(c *Config) { c.Roles = []string{"indexer"} }, []string{`"indexer"`, "container"}},
		{"container without region", func(c *Config) { c.Container.Region = "" }, []string{"--region"}},
		{"container without location", func(c *Config) { c.Container.Geohash = "" },
			[]string{"--geohash", "--lat", "--lon"}},
		{"latitude without longitude", func(c *Config) { c.Container.Latitude = ptr(48.0) },
			[]string{"latitude", "longitude"}},
		{"longitude without latitude", func(c *Config) { c.Container.Longitude = ptr(2.0) },
			[]string{"latitude", "longitude"}},
		{"latitude out of range", func(c *Config) { c.Container.Latitude, c.Container.Longitude = ptr(91.0), ptr(2.0) },
			[]string{"±90"}},
		{"longitude out of range", func(c *Config) { c.Container.Latitude, c.Container.Longitude = ptr(48.0), ptr(-180.5) },
			[]string{"±180"}},
		{"bad fee", func(c *Config) { c.Container.SessionFee = "-1" }, []string{"session_fee", `"-1"`}},
		{"too precise fee", func(c *Config) { c.Container.SessionFee = "0.0000001" }, []string{"session_fee"}},
		{"receipts too rare", func(c *Config) { c.Container.ReceiptInterval = Duration(2 * time.Minute) },
			[]string{"receipt_interval", "2m0s", "1s to 1m"}},
		{"receipts too frequent", func(c *Config) { c.Container.ReceiptInterval = Duration(time.Millisecond) },
			[]string{"receipt_interval", "1s to 1m"}},
		{"bad log level", func(c *Config) { c.Log.Level = "verbose" }, []string{`"verbose"`, "debug"}},
		{"bad log format", func(c *Config) { c.Log.Format = "xml" }, []string{`"xml"`, "json"}},
		{"no listen address", func(c *Config) { c.P2P.Listen = nil }, []string{"--listen"}},
		{"conn_low above conn_high", func(c *Config) { c.P2P.ConnLow, c.P2P.ConnHigh = 100, 50 },
			[]string{"conn_low", "conn_high"}},
		{"zero conn_low", func(c *Config) { c.P2P.ConnLow = 0 }, []string{"conn_low"}},
		{"tiny resources", func(c *Config) { c.P2P.ResourceFDs = 10 }, []string{"resource_fds"}},
		{"bad serve region", func(c *Config) { c.P2P.ServeRegions = []string{"EU West"} }, []string{`"EU West"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := containerConfig()
			tt.edit(&cfg)
			checkUserError(t, cfg.Validate(), tt.fragments...)
		})
	}
}

func TestValidateIgnoresContainerSettingsWithoutTheRole(t *testing.T) {
	cfg := Default()
	cfg.Container.SessionFee = "not a fee"
	cfg.Container.Latitude = ptr(1000.0)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a plain node is refused for its container settings: %v", err)
	}
}

func TestContainerLocation(t *testing.T) {
	t.Run("from coordinates", func(t *testing.T) {
		cc := ContainerConfig{Latitude: ptr(48.8566), Longitude: ptr(2.3522)} // Paris
		gh, ll := cc.Location()
		if len(gh) != 8 || !strings.HasPrefix(gh, "u09tvw") {
			t.Errorf("geohash = %q, want 8 characters starting u09tvw", gh)
		}
		if ll == nil || *ll != [2]int32{48_856_600, 2_352_200} {
			t.Errorf("coordinates = %v, want [48856600 2352200]", ll)
		}
	})
	t.Run("southern and western", func(t *testing.T) {
		cc := ContainerConfig{Latitude: ptr(-23.5505), Longitude: ptr(-46.6333)} // São Paulo
		gh, ll := cc.Location()
		if !strings.HasPrefix(gh, "6gyf4b") {
			t.Errorf("geohash = %q, want it to start 6gyf4b", gh)
		}
		if ll == nil || *ll != [2]int32{-23_550_500, -46_633_300} {
			t.Errorf("coordinates = %v", ll)
		}
	})
	t.Run("explicit geohash wins, lowercased", func(t *testing.T) {
		cc := ContainerConfig{Geohash: "U33DC0", Latitude: ptr(48.8566), Longitude: ptr(2.3522)}
		if gh, ll := cc.Location(); gh != "u33dc0" || ll == nil {
			t.Errorf("Location() = %q, %v; want u33dc0 and the coordinates", gh, ll)
		}
	})
	t.Run("geohash only", func(t *testing.T) {
		cc := ContainerConfig{Geohash: "u09tvw"}
		if gh, ll := cc.Location(); gh != "u09tvw" || ll != nil {
			t.Errorf("Location() = %q, %v; want u09tvw and no coordinates", gh, ll)
		}
	})
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in     string
		micros uint64
		canon  string // FormatAmount of the result
	}{
		{"0", 0, "0"},
		{"0.0", 0, "0"},
		{"1", 1_000_000, "1"},
		{"0.25", 250_000, "0.25"},
		{".5", 500_000, "0.5"},
		{"5.", 5_000_000, "5"},
		{"1.000001", 1_000_001, "1.000001"},
		{"0.000001", 1, "0.000001"},
		{"007.100", 7_100_000, "7.1"},
		{" 2.5 ", 2_500_000, "2.5"},
		{"1000000", 1_000_000_000_000, "1000000"},
		{"18446744073709.551615", math.MaxUint64, "18446744073709.551615"},
	}
	for _, tt := range tests {
		got, err := ParseAmount(tt.in)
		if err != nil {
			t.Errorf("ParseAmount(%q): %v", tt.in, err)
			continue
		}
		if got != tt.micros {
			t.Errorf("ParseAmount(%q) = %d, want %d", tt.in, got, tt.micros)
		}
		if s := FormatAmount(got); s != tt.canon {
			t.Errorf("FormatAmount(%d) = %q, want %q", got, s, tt.canon)
		}
		if back, err := ParseAmount(FormatAmount(got)); err != nil || back != got {
			t.Errorf("round trip of %q: ParseAmount(%q) = %d, %v", tt.in, FormatAmount(got), back, err)
		}
	}
}

func TestParseAmountRejects(t *testing.T) {
	for _, in := range []string{
		"-1", "+1", "1.2345678", "", " ", "abc", ".", "1.2.3", "1,5", "1e6", "0x10", "1_000", "1.-5", "١",
		"18446744073709.551616", "18446744073709551615", "99999999999999999999999",
	} {
		v, err := ParseAmount(in)
		if err == nil {
			t.Errorf("ParseAmount(%q) = %d, want an error", in, v)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseAmount(%q) error is not one line: %q", in, err)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	for micros, want := range map[uint64]string{
		0: "0", 1: "0.000001", 10: "0.00001", 250_000: "0.25", 1_000_000: "1", 10_000_000: "10",
		12_345_678: "12.345678", math.MaxUint64: "18446744073709.551615",
	} {
		if got := FormatAmount(micros); got != want {
			t.Errorf("FormatAmount(%d) = %q, want %q", micros, got, want)
		}
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"0", "0.25", ".5", "5.", "1.000001", "-1", "1.2345678", "", ".", "abc",
		"18446744073709.551615", "18446744073709.551616", " 7 ", "+3", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseAmount(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseAmount(%q) error is not one line: %q", s, err)
			}
			return
		}
		text := FormatAmount(v)
		back, err := ParseAmount(text)
		if err != nil {
			t.Fatalf("ParseAmount(%q) = %d, but FormatAmount gives %q which does not parse: %v", s, v, text, err)
		}
		if back != v {
			t.Fatalf("ParseAmount(%q) = %d; FormatAmount = %q; parses back to %d", s, v, text, back)
		}
	})
}
