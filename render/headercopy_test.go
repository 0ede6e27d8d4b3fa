package render

import (
	"sync"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const twccURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// senderChain builds the sender's RTP path as newAPI orders it: the TWCC header extension nearest
// the wire, then headerCopy, then the NACK responder. out receives what reaches the wire.
func senderChain(t *testing.T, out interceptor.RTPWriter) (interceptor.RTPWriter, *interceptor.Chain) {
	t.Helper()
	tf, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	nf, err := nack.NewResponderInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	var chain []interceptor.Interceptor
	for _, f := range []interceptor.Factory{tf, headerCopyFactory{}, nf} {
		i, err := f.NewInterceptor("")
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, i)
	}
	c := interceptor.NewChain(chain)
	t.Cleanup(func() { _ = c.Close() })
	info := &interceptor.StreamInfo{SSRC: 1, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}},
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: twccURI, ID: 5}}}
	w := c.BindLocalStream(info, out)
	return w, c
}

// The header a writer passes in is not written by the TWCC interceptor beneath headerCopy: what
// reaches the wire carries the extension, the caller's header does not.
func TestHeaderCopyKeepsTheCallersHeader(t *testing.T) {
	var sent []rtp.Header
	w, _ := senderChain(t, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		sent = append(sent, h.Clone())
		return len(p), nil
	}))
	h := rtp.Header{Version: 2, SSRC: 1, SequenceNumber: 7, PayloadType: 96}
	if _, err := w.Write(&h, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if h.Extension || h.GetExtension(5) != nil {
		t.Errorf("the caller's header was written: %+v", h)
	}
	if len(sent) != 1 || sent[0].GetExtension(5) == nil {
		t.Fatalf("sent %+v, want one packet with the TWCC extension", sent)
	}
}

// Many NACKs for one packet at once: the NACK responder resends it from a goroutine per NACK.
// Without headerCopy, the race detector reports those resends writing the stored header together.
func TestConcurrentNacksResendWithoutRace(t *testing.T) {
	const nacks = 64
	var mu sync.Mutex
	sent := 0
	done := make(chan struct{})
	w, c := senderChain(t, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if sent++; sent == 1+nacks {
			close(done) // the first send and every resend went out
		}
		return len(p), nil
	}))
	if _, err := w.Write(&rtp.Header{Version: 2, SSRC: 1, SequenceNumber: 7, PayloadType: 96}, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	raw, err := (&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 7}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r := c.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, raw), a, nil
	}))
	buf := make([]byte, 1500)
	for range nacks {
		if _, _, err := r.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-done // the resends run in the responder's goroutines
}
