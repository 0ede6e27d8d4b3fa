package render

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Signaller carries a render session's signalling: /rendermesh/render/1.0.0 over libp2p in a node,
// a pipe in tests. Send and Recv may be called from different goroutines; Send is called from one
// goroutine at a time.
type Signaller interface {
	Send(*pb.RenderSignal) error
	Recv() (*pb.RenderSignal, error)
}

// Errors.
var (
	// ErrRefused is returned to a consumer whose offer the container refused.
	ErrRefused = errors.New("render: container refused the render session")
	// ErrSignal is returned for a signalling message out of place.
	ErrSignal = errors.New("render: bad signalling message")
	// ErrNoPath is returned when ICE found no working path (no direct one, and no relay).
	ErrNoPath = errors.New("render: no path between consumer and container (ICE failed)")
	// ErrEndedEarly is returned by Serve when the consumer ended before the stream started.
	ErrEndedEarly = errors.New("render: the consumer ended the session before the stream started")
)

// refusedNoPath is the container's refusal when ICE found no path.
const refusedNoPath = "no path: ICE failed"

// ICE timeouts: a path silent for iceDisconnected is disconnected (ICE restart territory), after
// iceFailed it failed; keepalives every iceKeepalive keep NAT bindings open.
const (
	maxNacksPerPacket = 3

	iceDisconnected = 3 * time.Second
	iceFailed       = 8 * time.Second
	iceKeepalive    = time.Second
)

// PeerOptions are what both ends of a render session configure in their PeerConnection.
type PeerOptions struct {
	// ICEServers are STUN/TURN servers (TURN with REST credentials from the match).
	ICEServers []*pb.IceServer
	// RelayOnly restricts ICE to relayed candidates.
	RelayOnly bool
	// NAT1To1IPs are public addresses to advertise as host candidates (a container behind 1:1 NAT).
	NAT1To1IPs []string
	// PortMin and PortMax bound the UDP ports ICE uses (0: any).
	PortMin, PortMax uint16
	// Loopback admits loopback candidates (tests and one-machine devnets).
	Loopback bool
}

// iceServers converts the wire form.
func iceServers(in []*pb.IceServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		if len(s.GetUrls()) == 0 {
			continue
		}
		out = append(out, webrtc.ICEServer{URLs: s.GetUrls(), Username: s.GetUsername(), Credential: s.GetCredential()})
	}
	return out
}

// newAPI builds a pion API with VP8 only, RTCP feedback (NACK, PLI, receiver reports, transport-wide
// congestion control feedback) and, on the sending side, a Google Congestion Control estimator whose
// estimate the sender reads to drive the encoder. The pacer is pion's no-op one: the encoder's rate
// control is what shapes the stream (see ../shared/VERSIONS.md on the default pacer's latency).
func newAPI(o PeerOptions, sending *Bitrates, onEstimator func(cc.BandwidthEstimator)) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
		{Type: "transport-cc"},
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("render: register VP8: %w", err)
	}
	ir := &interceptor.Registry{}
	if sending != nil {
		r := *sending
		bwe, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
			return gcc.NewSendSideBWE(
				gcc.SendSideBWEInitialBitrate(r.StartKbps*1000),
				gcc.SendSideBWEMinBitrate(r.MinKbps*1000),
				gcc.SendSideBWEMaxBitrate(r.MaxKbps*1000),
				gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
			)
		})
		if err != nil {
			return nil, fmt.Errorf("render: congestion control: %w", err)
		}
		bwe.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onEstimator(e) })
		ir.Add(bwe)
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
			return nil, err
		}
		ir.Add(headerCopyFactory{}) // between the TWCC header extension and the NACK responder
	}
	// NACK at most 3 times per lost packet: pion's generator otherwise re-asks for every missing
	// packet of its window every 100 ms, and on a congested link the retransmissions it provokes
	// (measured: 17-20 Mbit/s into an 800 kbit/s bottleneck) starve the new frames and pin the
	// congestion controller at its floor.
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir,
		webrtc.WithNackGeneratorOptions(nack.GeneratorMaxNacksPerPacket(maxNacksPerPacket))); err != nil {
		return nil, fmt.Errorf("render: interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetICETimeouts(iceDisconnected, iceFailed, iceKeepalive)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetIncludeLoopbackCandidate(o.Loopback)
	if o.RelayOnly {
		// pion waits 2 s before it accepts a relayed pair; with nothing else allowed that is pure delay.
		se.SetRelayAcceptanceMinWait(0)
	} else {
		se.SetRelayAcceptanceMinWait(500 * time.Millisecond)
	}
	if len(o.NAT1To1IPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        o.NAT1To1IPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("render: NAT 1:1 addresses: %w", err)
		}
	}
	if o.PortMin != 0 || o.PortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(o.PortMin, o.PortMax); err != nil {
			return nil, fmt.Errorf("render: UDP port range: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func (o PeerOptions) configuration() webrtc.Configuration {
	c := webrtc.Configuration{ICEServers: iceServers(o.ICEServers)}
	if o.RelayOnly {
		c.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return c
}

// candidateMsg converts a local candidate for the wire.
func candidateMsg(c *webrtc.ICECandidate) *pb.RenderSignal {
	init := c.ToJSON()
	m := &pb.IceCandidate{Candidate: init.Candidate}
	if init.SDPMid != nil {
		m.SdpMid = *init.SDPMid
	}
	if init.SDPMLineIndex != nil {
		m.SdpMlineIndex = uint32(*init.SDPMLineIndex)
	}
	return &pb.RenderSignal{Candidate: m}
}

// addCandidate applies a remote trickled candidate.
func addCandidate(pc *webrtc.PeerConnection, c *pb.IceCandidate) error {
	if len(c.GetCandidate()) > 1024 {
		return fmt.Errorf("%w: candidate of %d bytes", ErrSignal, len(c.GetCandidate()))
	}
	mid := c.GetSdpMid()
	idx := uint16(c.GetSdpMlineIndex())
	return pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.GetCandidate(), SDPMid: &mid, SDPMLineIndex: &idx})
}

// relayWatch follows whether the selected candidate pair goes through a TURN relay, from ICE's
// own callback. Asking the ICE transport instead (GetSelectedCandidatePair) reads its gatherer
// without the lock under which a SetRemoteDescription still in flight (an answer to a restart, or
// one that arrived as the session ended) starts the transports: a data race in pion v4.2.20.
type relayWatch struct{ relay atomic.Bool }

// watchRelay starts following pc's selected pair; call it before any description is set.
func watchRelay(pc *webrtc.PeerConnection) *relayWatch {
	w := &relayWatch{}
	if sctp := pc.SCTP(); sctp != nil {
		sctp.Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
			w.relay.Store(p != nil && (p.Local.Typ == webrtc.ICECandidateTypeRelay || p.Remote.Typ == webrtc.ICECandidateTypeRelay))
		})
	}
	return w
}

// relayed reports whether the last selected candidate pair goes through a TURN relay.
func (w *relayWatch) relayed() bool { return w.relay.Load() }

// trickle sends local candidates in order behind the description they belong to: pion gathers as
// soon as the local description is set, before the offer or answer has gone out, and a candidate
// that overtook its description would reach a peer that cannot use it yet.
type trickle struct {
	mu     sync.Mutex
	open   bool
	queued []*pb.RenderSignal
	send   func(*pb.RenderSignal) error
}

// candidate sends m now, or once the description is out.
func (t *trickle) candidate(m *pb.RenderSignal) {
	t.mu.Lock()
	if !t.open {
		t.queued = append(t.queued, m)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = t.send(m)
}

// hold queues candidates until the next description is sent (an ICE restart).
func (t *trickle) hold() {
	t.mu.Lock()
	t.open = false
	t.mu.Unlock()
}

// describe sends the description, then the candidates queued behind it.
func (t *trickle) describe(m *pb.RenderSignal) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.send(m); err != nil {
		return err
	}
	for _, c := range t.queued {
		_ = t.send(c)
	}
	t.queued, t.open = nil, true
	return nil
}

// headerCopyFactory makes the interceptor that hands the interceptors beneath it (the TWCC header
// extension) a copy of each outgoing RTP header. The NACK responder above it resends a stored packet
// from one goroutine per NACK it receives, so two NACKs naming the same packet had the TWCC
// interceptor write its sequence number into the one stored header at once: a data race in
// pion/interceptor v0.1.48 that the race detector reported in TestBandwidthCut. With a copy, each
// send carries its own transport sequence number and the stored packet is never written.
type headerCopyFactory struct{}

func (headerCopyFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &headerCopy{}, nil
}

type headerCopy struct{ interceptor.NoOp }

func (*headerCopy) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		c := h.Clone()
		return w.Write(&c, payload, a)
	})
}
