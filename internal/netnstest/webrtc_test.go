package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/rendermesh/rendermesh/render/turn"
)

// peerConfig is what the parent tells an offerer or answerer child (as JSON in peerEnv).
type peerConfig struct {
	ICEServers []turn.ICEServer `json:"iceServers"` // same JSON as []webrtc.ICEServer
	RelayOnly  bool             `json:"relayOnly"`
	// ICE gives up this long after checking starts without a working pair (disconnected +
	// failed timeouts, see pion/ice initialCheckingTimeout).
	Disconnected, Failed time.Duration
}

// peerResult is what a child reports on its RESULT line.
type peerResult struct {
	State      string `json:"state"` // "connected" (a message made the round trip) or "failed"
	LocalType  string `json:"localType,omitempty"`
	LocalAddr  string `json:"localAddr,omitempty"`
	RemoteType string `json:"remoteType,omitempty"`
	RemoteAddr string `json:"remoteAddr,omitempty"`
}

const (
	peerEnv = "RM_PEER_CONFIG"
	// relayEnv carries "<secret base64> <relay ip>" to the relay child.
	relayEnv = "RM_RELAY"
)

// A consumer in a and a container in b cannot reach each other; ICE must fail without the relay
// and connect through it with it, whatever the transport policy.
func TestICEFallsBackToRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("six WebRTC peers and two relays in namespaces: not a short test")
	}
	requireNetns(t)
	n := Setup(t)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)

	t.Run("no relay: ICE fails, the direct path is blocked", func(t *testing.T) {
		a, b := runPairWith(t, n, peerConfig{Disconnected: time.Second, Failed: 2 * time.Second})
		if a.State != "failed" || b.State != "failed" {
			t.Fatalf("offerer %+v, answerer %+v: want both failed", a, b)
		}
	})

	t.Run("policy all: connects through the relay", func(t *testing.T) {
		a, b, st := runPairWithRelay(t, n, secret, false)
		if a.State != "connected" || b.State != "connected" {
			t.Fatalf("offerer %+v, answerer %+v: want both connected", a, b)
		}
		if a.LocalType != "relay" && b.LocalType != "relay" {
			t.Fatalf("offerer %+v, answerer %+v: want a relay candidate on at least one side", a, b)
		}
		checkRelayed(t, st)
	})

	t.Run("policy relay: connects through the relay", func(t *testing.T) {
		a, b, st := runPairWithRelay(t, n, secret, true)
		if a.State != "connected" || b.State != "connected" {
			t.Fatalf("offerer %+v, answerer %+v: want both connected", a, b)
		}
		if a.LocalType != "relay" || b.LocalType != "relay" {
			t.Fatalf("offerer %+v, answerer %+v: want relay candidates on both sides", a, b)
		}
		checkRelayed(t, st)
	})
}

func checkRelayed(t *testing.T, st turn.Stats) {
	t.Helper()
	if st.AllocationsTotal == 0 || st.BytesToPeers == 0 || st.BytesFromPeers == 0 || st.AuthFailures != 0 {
		t.Fatalf("relay stats %+v: want allocations, bytes both ways, no auth failures", st)
	}
}

// runPairWithRelay runs the render/turn relay in r, then a pair that uses it with REST
// credentials, and returns the pair's results and the relay's final stats.
func runPairWithRelay(t *testing.T, n *Net, secret []byte, relayOnly bool) (a, b peerResult, st turn.Stats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), parentTimeout)
	defer cancel()
	relay := startChild(ctx, t, n, R, "relay",
		relayEnv+"="+base64.StdEncoding.EncodeToString(secret)+" "+n.RelayIP.String())
	var urls []string
	if err := json.Unmarshal([]byte(relay.expect(ctx, "READY")), &urls); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cfg := peerConfig{RelayOnly: relayOnly, Disconnected: 5 * time.Second, Failed: 10 * time.Second}
	a, b = runPairWith(t, n, cfg,
		turn.ForSession(urls, secret, "consumer", 10*time.Minute, now),
		turn.ForSession(urls, secret, "container", 10*time.Minute, now))
	relay.finish(ctx)
	if err := json.Unmarshal([]byte(relay.expect(ctx, "STATS")), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("relay stats: %+v", st)
	return a, b, st
}

// runPairWith runs an offerer in a and an answerer in b, carries their SDP across, and returns
// what each reports. ice, if given, holds the offerer's then the answerer's ICE server.
func runPairWith(t *testing.T, n *Net, cfg peerConfig, ice ...turn.ICEServer) (a, b peerResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), parentTimeout)
	defer cancel()
	env := func(i int) string {
		c := cfg
		if len(ice) > i {
			c.ICEServers = []turn.ICEServer{ice[i]}
		}
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return peerEnv + "=" + string(j)
	}
	off := startChild(ctx, t, n, A, "offerer", env(0))
	ans := startChild(ctx, t, n, B, "answerer", env(1))
	ans.send("SDP", off.expect(ctx, "SDP"))
	off.send("SDP", ans.expect(ctx, "SDP"))
	for _, r := range []struct {
		c   *child
		res *peerResult
	}{{off, &a}, {ans, &b}} {
		if err := json.Unmarshal([]byte(r.c.expect(ctx, "RESULT")), r.res); err != nil {
			t.Fatal(err)
		}
	}
	off.finish(ctx)
	ans.finish(ctx)
	t.Logf("offerer in a: %+v", a)
	t.Logf("answerer in b: %+v", b)
	return a, b
}

// runRelay runs render/turn in r: listening on all of r's addresses, advertising (and binding
// relay sockets on) the relay IP both sides reach. It prints its ICE URLs, serves until stdin
// closes, then prints its stats.
func runRelay(ctx context.Context, in <-chan string, out *lineWriter) error {
	secretText, relayIP, _ := strings.Cut(os.Getenv(relayEnv), " ")
	secret, err := base64.StdEncoding.DecodeString(secretText)
	if err != nil {
		return err
	}
	s, err := turn.Listen(turn.Config{
		ListenUDP: "0.0.0.0:3478",
		RelayIP:   net.ParseIP(relayIP),
		Secret:    secret,
	})
	if err != nil {
		return err
	}
	urls, _ := json.Marshal(s.URLs(""))
	out.send("READY", string(urls))
	waitErr := waitClosed(ctx, in)
	if err := s.Close(); err != nil {
		return err
	}
	st, _ := json.Marshal(s.Stats())
	out.send("STATS", string(st))
	return waitErr
}

// newPeer builds a PeerConnection from the config in peerEnv: UDP over IPv4 only, no mDNS, and
// relay candidates accepted without pion's default 2 s wait.
func newPeer() (*webrtc.PeerConnection, error) {
	var cfg peerConfig
	if err := json.Unmarshal([]byte(os.Getenv(peerEnv)), &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", peerEnv, err)
	}
	var se webrtc.SettingEngine
	se.SetICETimeouts(cfg.Disconnected, cfg.Failed, 500*time.Millisecond)
	se.SetRelayAcceptanceMinWait(0)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// ICE servers cross as render/turn JSON and land as webrtc's: the shapes agree.
	var servers []webrtc.ICEServer
	j, _ := json.Marshal(cfg.ICEServers)
	if err := json.Unmarshal(j, &servers); err != nil {
		return nil, err
	}
	policy := webrtc.ICETransportPolicyAll
	if cfg.RelayOnly {
		policy = webrtc.ICETransportPolicyRelay
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers:         servers,
		ICETransportPolicy: policy,
	})
}

// iceFailed is closed when pc's ICE connection fails.
func iceFailed(pc *webrtc.PeerConnection) <-chan struct{} {
	failed := make(chan struct{})
	var once sync.Once
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		logf("ICE %s", s)
		if s == webrtc.ICEConnectionStateFailed {
			once.Do(func() { close(failed) })
		}
	})
	return failed
}

// runOfferer offers a data channel, sends a ping when it opens and reports once the echo is
// back (or ICE failed).
func runOfferer(ctx context.Context, in <-chan string, out *lineWriter) error {
	pc, err := newPeer()
	if err != nil {
		return err
	}
	defer func() { _ = pc.Close() }()
	failed := iceFailed(pc)
	dc, err := pc.CreateDataChannel("probe", nil)
	if err != nil {
		return err
	}
	nonce := rand.Text()
	echoed := make(chan struct{})
	var once sync.Once
	dc.OnOpen(func() {
		if err := dc.SendText("ping " + nonce); err != nil {
			logf("send: %v", err)
		}
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if string(m.Data) == "pong "+nonce {
			once.Do(func() { close(echoed) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := setLocalAndSend(pc, offer, out); err != nil {
		return err
	}
	if err := receiveRemote(ctx, pc, in); err != nil {
		return err
	}
	return report(ctx, pc, echoed, failed, in, out)
}

// runAnswerer answers, echoes the ping back as a pong and reports (or reports ICE failure).
func runAnswerer(ctx context.Context, in <-chan string, out *lineWriter) error {
	pc, err := newPeer()
	if err != nil {
		return err
	}
	defer func() { _ = pc.Close() }()
	failed := iceFailed(pc)
	echoed := make(chan struct{})
	var once sync.Once
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			nonce, ok := strings.CutPrefix(string(m.Data), "ping ")
			if !ok {
				return
			}
			if err := dc.SendText("pong " + nonce); err != nil {
				logf("send: %v", err)
				return
			}
			once.Do(func() { close(echoed) })
		})
	})
	if err := receiveRemote(ctx, pc, in); err != nil {
		return err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := setLocalAndSend(pc, answer, out); err != nil {
		return err
	}
	return report(ctx, pc, echoed, failed, in, out)
}

// setLocalAndSend sets the local description, waits for gathering to complete (no trickle) and
// sends the full description to the parent.
func setLocalAndSend(pc *webrtc.PeerConnection, sd webrtc.SessionDescription, out *lineWriter) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(sd); err != nil {
		return err
	}
	<-gathered
	logf("gathered, sending %s", sd.Type)
	j, err := json.Marshal(pc.LocalDescription())
	if err != nil {
		return err
	}
	out.send("SDP", base64.StdEncoding.EncodeToString(j))
	return nil
}

func receiveRemote(ctx context.Context, pc *webrtc.PeerConnection, in <-chan string) error {
	payload, err := expect(ctx, in, "SDP")
	if err != nil {
		return err
	}
	j, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return err
	}
	var sd webrtc.SessionDescription
	if err := json.Unmarshal(j, &sd); err != nil {
		return err
	}
	logf("received %s", sd.Type)
	return pc.SetRemoteDescription(sd)
}

// report waits for the round trip or ICE failure, reports the outcome and the selected pair, and
// keeps the connection up until the parent closes stdin.
func report(ctx context.Context, pc *webrtc.PeerConnection, echoed, failed <-chan struct{}, in <-chan string, out *lineWriter) error {
	var res peerResult
	select {
	case <-echoed:
		res.State = "connected"
		pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			return fmt.Errorf("connected without a selected candidate pair: %v", err)
		}
		res.LocalType, res.LocalAddr = pair.Local.Typ.String(), net.JoinHostPort(pair.Local.Address, fmt.Sprint(pair.Local.Port))
		res.RemoteType, res.RemoteAddr = pair.Remote.Typ.String(), net.JoinHostPort(pair.Remote.Address, fmt.Sprint(pair.Remote.Port))
	case <-failed:
		res.State = "failed"
	case <-ctx.Done():
		return errors.New("neither connected nor failed before the child timeout")
	}
	j, _ := json.Marshal(res)
	logf("result %s", j)
	out.send("RESULT", string(j))
	err := waitClosed(ctx, in)
	logf("closing")
	return err
}
