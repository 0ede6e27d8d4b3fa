package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/roles/container"
)

// testNodeConfig is a container node alone on loopback, with its admin listener on a free port.
func testNodeConfig(dataDir string) Config {
	cfg := Default()
	cfg.DataDir = dataDir
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Roles = []string{RoleContainer}
	cfg.Container.Region = "eu-west"
	cfg.Container.Geohash = "u09tvw"
	return cfg
}

func testNodeOptions() Options {
	prof, _ := container.ProfileByName("t4")
	return Options{
		Probe:       container.NewSimulatedProbe(prof, 1),
		LoopbackNet: true,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// startNode creates and starts a node; it is closed when the test ends (closing twice is harmless).
func startNode(t *testing.T, cfg Config, opts Options) *Node {
	t.Helper()
	n, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return n
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func call(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// operator posts a lock or unlock and returns the status code and the state it reports.
func operator(t *testing.T, n *Node, action string) (int, string) {
	t.Helper()
	code, body := call(t, http.MethodPost, "http://"+n.AdminAddr()+"/v1/container/"+action)
	var r stateResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%s: answer %q is not JSON: %v", action, body, err)
	}
	return code, r.State
}

func TestNodeAdmin(t *testing.T) {
	cfg := testNodeConfig(t.TempDir())
	n := startNode(t, cfg, testNodeOptions())
	base := "http://" + n.AdminAddr()

	t.Run("healthz", func(t *testing.T) {
		code, body := call(t, http.MethodGet, base+"/healthz")
		if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
			t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		code, body := call(t, http.MethodGet, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics = %d", code)
		}
		for _, want := range []string{"rendermesh_", "libp2p_", "go_goroutines"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics has no %q metric", want)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		code, body := call(t, http.MethodGet, base+"/v1/status")
		if code != http.StatusOK {
			t.Fatalf("GET /v1/status = %d %q", code, body)
		}
		var st struct {
			PeerID    string `json:"peer_id"`
			Container *struct {
				State     string `json:"state"`
				Simulated bool   `json:"simulated_hardware"`
			} `json:"container"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("status %q: %v", body, err)
		}
		if st.PeerID != n.Net().ID().String() {
			t.Errorf("peer_id = %q, want %s", st.PeerID, n.Net().ID())
		}
		if st.Container == nil {
			t.Fatalf("status has no container: %s", body)
		}
		// No dev autocheck and no checker: the container waits for its registration check.
		if st.Container.State != "awaiting_check" {
			t.Errorf("container.state = %q, want awaiting_check", st.Container.State)
		}
		if !st.Container.Simulated {
			t.Error("container.simulated_hardware = false with a simulated probe")
		}
	})

	t.Run("lock and unlock", func(t *testing.T) {
		if code, state := operator(t, n, "lock"); code != http.StatusOK || state != "locked" {
			t.Errorf("lock = %d %q, want 200 locked", code, state)
		}
		if code, state := operator(t, n, "lock"); code != http.StatusConflict || state != "locked" {
			t.Errorf("second lock = %d %q, want 409 locked", code, state)
		}
		if code, state := operator(t, n, "unlock"); code != http.StatusOK || state != "awaiting_check" {
			t.Errorf("unlock = %d %q, want 200 awaiting_check", code, state)
		}
		if got := n.Status().Container.State; got != "awaiting_check" {
			t.Errorf("after unlock, state = %q", got)
		}
	})

	t.Run("fee", func(t *testing.T) {
		code, body := call(t, http.MethodPost, base+"/v1/container/fee?session_fee=0.3")
		if code != http.StatusOK || !strings.Contains(body, `"session_fee":"0.3"`) {
			t.Errorf("fee 0.3 = %d %q", code, body)
		}
		if got := n.Status().Container.FeeMicros; got != 300_000 {
			t.Errorf("status fee = %d micros, want 300000", got)
		}
		if code, body := call(t, http.MethodPost, base+"/v1/container/fee?session_fee=-1"); code != http.StatusBadRequest {
			t.Errorf("fee -1 = %d %q, want 400", code, body)
		}
	})

	t.Run("epoch checkpoint", func(t *testing.T) {
		// This node holds no elections: it has no checkpoint to give, and says why.
		if code, body := call(t, http.MethodGet, base+"/v1/epochs/checkpoint"); code != http.StatusServiceUnavailable || !strings.Contains(body, "genesis_time") {
			t.Errorf("GET /v1/epochs/checkpoint = %d %q, want 503 naming genesis_time", code, body)
		}
	})

	t.Run("operator actions need POST", func(t *testing.T) {
		if code, _ := call(t, http.MethodGet, base+"/v1/container/lock"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET /v1/container/lock = %d, want 405", code)
		}
	})

	t.Run("web client", func(t *testing.T) {
		if code, body := call(t, http.MethodGet, base+"/"); code != http.StatusOK || !strings.Contains(body, "app.js") {
			t.Errorf("GET / = %d, want the page", code)
		}
		if code, _ := call(t, http.MethodGet, base+"/app.js"); code != http.StatusOK {
			t.Errorf("GET /app.js = %d", code)
		}
		if code, _ := call(t, http.MethodGet, base+"/no-such-page"); code != http.StatusNotFound {
			t.Errorf("GET /no-such-page = %d, want 404", code)
		}
		if code, body := call(t, http.MethodGet, base+"/v1/render/apps"); code != http.StatusOK || !strings.Contains(body, `"apps"`) {
			t.Errorf("GET /v1/render/apps = %d %q", code, body)
		}
		// This node holds no elections: it cannot get anyone matched, and says so.
		if code, body := call(t, http.MethodPost, base+"/v1/render/whep?app=demo"); code != http.StatusServiceUnavailable || !strings.Contains(body, "error") {
			t.Errorf("POST /v1/render/whep = %d %q, want 503 with an error", code, body)
		}
		if code, _ := call(t, http.MethodDelete, base+"/v1/render/whep/abc"); code != http.StatusNotFound {
			t.Errorf("DELETE an unknown session = %d, want 404", code)
		}
	})
}

func TestNodeAdminWithoutContainer(t *testing.T) {
	cfg := testNodeConfig(t.TempDir())
	cfg.Roles = nil
	n := startNode(t, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	code, _ := call(t, http.MethodPost, "http://"+n.AdminAddr()+"/v1/container/lock")
	if code != http.StatusNotFound {
		t.Errorf("lock on a plain node = %d, want 404", code)
	}
	if st := n.Status(); st.Container != nil {
		t.Errorf("a plain node reports a container: %+v", st.Container)
	}
}

func TestNodeDataDirLockedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	n, err := New(testNodeConfig(dir), testNodeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	second, err := New(testNodeConfig(dir), testNodeOptions())
	if !errors.Is(err, ErrLocked) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second New on the same data dir: %v, want ErrLocked", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestNodeRestartKeepsIdentityAndLock(t *testing.T) {
	dir := t.TempDir()
	cfg := testNodeConfig(dir)

	first := startNode(t, cfg, testNodeOptions())
	id := first.Net().ID()
	if code, state := operator(t, first, "lock"); code != http.StatusOK || state != "locked" {
		t.Fatalf("lock = %d %q", code, state)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	second := startNode(t, cfg, testNodeOptions())
	if got := second.Net().ID(); got != id {
		t.Errorf("peer ID after restart = %s, want %s", got, id)
	}
	// A restart leaves a locked container locked: the operator unlocks it.
	if got := second.Status().Container.State; got != "locked" {
		t.Errorf("state after restart = %q, want locked", got)
	}
}

func TestNodeUnreachableBootstrap(t *testing.T) {
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testNodeConfig(t.TempDir())
	cfg.P2P.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + pid.String()}
	cfg.P2P.BootstrapTimeout = Duration(2 * time.Second)
	n, err := New(cfg, testNodeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Start(ctx)
	if !errors.Is(err, p2p.ErrBootstrap) {
		t.Fatalf("Start: %v, want ErrBootstrap", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if !strings.Contains(err.Error(), "check the addresses") {
		t.Errorf("error %q does not say to check the addresses", err)
	}
}

func TestNodeBadBootstrapAddress(t *testing.T) {
	cfg := testNodeConfig(t.TempDir())
	cfg.P2P.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001"} // no /p2p/<peer ID>
	n, err := New(cfg, testNodeOptions())
	if err == nil {
		n.Close()
		t.Fatal("New accepted a bootstrap address without a peer ID")
	}
	if !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want a one-line config error", err)
	}
	// A failed New releases the data directory.
	again, err := New(testNodeConfig(cfg.DataDir), testNodeOptions())
	if err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
	again.Close()
}

func TestNodeWithoutGPU(t *testing.T) {
	nv := container.NewNVMLProbe(nil)
	reason := nv.Reason()
	nv.Close()

	cfg := testNodeConfig(t.TempDir())
	n, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)}) // no Probe: NVML
	if err != nil {
		t.Fatalf("New with the NVML probe: %v", err)
	}
	defer n.Close()
	hw := n.Container().Hardware()
	if reason == nil {
		t.Logf("this machine has an NVIDIA GPU: %d found", len(hw.GetGpus()))
		if len(hw.GetGpus()) == 0 {
			t.Error("NVML works, but the container reports no GPU")
		}
		return
	}
	// The honest report of a machine without GPU: CPU-only, not simulated.
	t.Logf("no GPU: %v", reason)
	if len(hw.GetGpus()) != 0 {
		t.Errorf("no NVML, but the container reports GPUs: %v", hw.GetGpus())
	}
	if hw.GetSimulated() {
		t.Error("the NVML probe reports simulated hardware")
	}
	if got := container.GPUModels(hw); len(got) != 1 || got[0] != container.CPUModel {
		t.Errorf("GPU models = %q, want [%s]", got, container.CPUModel)
	}
}

// A DHT handler still running when the node closes gets an error from the datastore, not a panic
// from a closed pebble.
func TestDatastoreClosedFailsOperations(t *testing.T) {
	pds, err := openDatastore(t.TempDir(), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	h := newDSHandle(pds, pds.Close)
	ctx := context.Background()
	if err := h.Put(ctx, ds.NewKey("/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	b, err := h.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	if err := h.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := h.Put(ctx, ds.NewKey("/b"), []byte("2")); !errors.Is(err, errDatastoreClosed) {
		t.Errorf("Put after close: %v", err)
	}
	if _, err := h.Get(ctx, ds.NewKey("/a")); !errors.Is(err, errDatastoreClosed) {
		t.Errorf("Get after close: %v", err)
	}
	_ = b.Put(ctx, ds.NewKey("/c"), []byte("3"))
	if err := b.Commit(ctx); !errors.Is(err, errDatastoreClosed) {
		t.Errorf("batch commit after close: %v", err)
	}
}
