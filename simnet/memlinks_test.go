package simnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

const echoProto = protocol.ID("/test/echo/1")

// streamPeers builds n libp2p hosts on the stream link model: peer i in region i (Paris, then
// Berlin, then New York...), on side i of a partition, 100 Mbit/s, 1 ms of last mile each way;
// writes arrive at their exact times (no tick).
func streamPeers(t *testing.T, n int) (*links, []host.Host) {
	t.Helper()
	return streamPeersTicking(t, n, 0)
}

// streamPeersTicking is streamPeers on a delivery grid of tickMs milliseconds.
func streamPeersTicking(t *testing.T, n int, tickMs float64) (*links, []host.Host) {
	t.Helper()
	topo := DefaultTopology()
	topo.Loss = 0
	topo.TickMs = tickMs
	specs := make([]*peerSpec, n)
	for i := range specs {
		specs[i] = &peerSpec{index: i, region: i, side: i, mbps: 100, accessDelayMs: 1}
	}
	l := newLinks(LinksStreams, &topo, 1, specs)
	hosts := make([]host.Host, n)
	for i := range hosts {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		opts := append([]libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings(listenAddr(i)),
			libp2p.DisableMetrics()}, l.transports(i)...)
		h, err := libp2p.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		h.SetStreamHandler(echoProto, func(s network.Stream) {
			io.Copy(s, s)
			s.Close()
		})
		hosts[i] = h
	}
	return l, hosts
}

func addrInfo(t *testing.T, h host.Host, i int) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: []ma.Multiaddr{ma.StringCast(listenAddr(i))}}
}

// echo writes msg on a new stream to h's echo handler and reads it back.
func echo(ctx context.Context, from host.Host, to peer.ID, msg []byte) ([]byte, error) {
	s, err := from.NewStream(ctx, to, echoProto)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if _, err := s.Write(msg); err != nil {
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(s)
}

func TestStreamLinksTakeTheTopologysTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, hs := streamPeers(t, 3) // Paris, Berlin, New York
		ctx := context.Background()
		rtt := l.mem.rtt(0, 2) // 80 ms ± 10%, plus 4 ms of last miles
		began := time.Now()
		if err := hs[0].Connect(ctx, addrInfo(t, hs[2], 2)); err != nil {
			t.Fatal(err)
		}
		// QUIC's handshake takes one round trip, identify (which Connect waits for) another.
		// (Identify's messages add a fraction of a millisecond on the access links.)
		if took := time.Since(began); took < 2*rtt || took > 2*rtt+time.Millisecond {
			t.Errorf("connect took %v, want two round trips, %v", took, 2*rtt)
		}
		msg := bytes.Repeat([]byte("x"), 100_000)
		synctest.Wait() // identify done
		began = time.Now()
		got, err := echo(ctx, hs[0], hs[2].ID(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo: got %d bytes back, want the %d sent", len(got), len(msg))
		}
		// The way there and back, plus 100 KB (and its packets' headers) serialised at 100 Mbit/s
		// on the sender's and the receiver's access links (8.3 ms each) on the way there, and again
		// on the way back, where the echo's 32 KB copies overlap with the arrival.
		took := time.Since(began)
		if took < rtt+2*8*time.Millisecond || took > rtt+4*9*time.Millisecond {
			t.Errorf("echo of 100 KB took %v, want a round trip (%v) plus 17 to 34 ms on the access links", took, rtt)
		}
		// Far from Paris, Berlin answers sooner.
		if l.mem.rtt(0, 1) >= rtt {
			t.Errorf("Paris-Berlin %v not shorter than Paris-New York %v", l.mem.rtt(0, 1), rtt)
		}
	})
}

// On a grid, every write arrives and every dial completes on a tick, at most a tick after its
// exact time: a connection (a dial and identify's exchange) and an echo end on ticks, later than
// exact by less than a tick per hop.
func TestStreamLinksDeliverOnTheTick(t *testing.T) {
	const tick = 5 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		l, hs := streamPeersTicking(t, 3, float64(tick/time.Millisecond))
		ctx := context.Background()
		rtt := l.mem.rtt(0, 2)
		onTick := func(what string) {
			t.Helper()
			if r := time.Now().UnixNano() % int64(tick); r != 0 {
				t.Errorf("%s ended %v past a tick", what, time.Duration(r))
			}
		}
		began := time.Now()
		if err := hs[0].Connect(ctx, addrInfo(t, hs[2], 2)); err != nil {
			t.Fatal(err)
		}
		onTick("connect")
		// The dial, identify's request and its answer: each waits for the next tick.
		if took := time.Since(began); took < 2*rtt || took >= 2*rtt+3*tick {
			t.Errorf("connect took %v, want two round trips (%v) plus less than three ticks", took, 2*rtt)
		}
		synctest.Wait()
		time.Sleep(tick / 3) // off the grid
		began = time.Now()
		got, err := echo(ctx, hs[0], hs[2].ID(), []byte("ping"))
		if err != nil || string(got) != "ping" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		onTick("echo")
		if took := time.Since(began); took < rtt || took >= rtt+3*tick {
			t.Errorf("echo took %v, want a round trip (%v) plus less than three ticks", took, rtt)
		}
	})
}

func TestStreamLinksCutHoldsThenHeals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, hs := streamPeers(t, 2)
		ctx := context.Background()
		if err := hs[0].Connect(ctx, addrInfo(t, hs[1], 1)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		l.setCut(true)
		done := make(chan error, 1)
		var got []byte
		go func() {
			var err error
			got, err = echo(ctx, hs[0], hs[1].ID(), []byte("across the cut"))
			done <- err
		}()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("the echo crossed a cut: %v", err)
		default:
		}
		l.setCut(false) // within QUIC's idle timeout: what waited goes through
		if err := <-done; err != nil || string(got) != "across the cut" {
			t.Fatalf("after the heal: %q, %v", got, err)
		}
		if hs[0].Network().Connectedness(hs[1].ID()) != network.Connected {
			t.Error("the connection did not survive a 20 s cut")
		}

		// A cut longer than the idle timeout closes the connection at both ends.
		l.setCut(true)
		time.Sleep(memIdleTimeout + time.Second)
		synctest.Wait()
		for i, h := range hs {
			if c := h.Network().ConnsToPeer(hs[1-i].ID()); len(c) != 0 {
				t.Errorf("peer %d still holds %d connections after a %v cut", i, len(c), memIdleTimeout)
			}
		}
		// Dialling across it fails after the handshake timeout.
		began := time.Now()
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := hs[0].Connect(network.WithForceDirectDial(dctx, "test"), addrInfo(t, hs[1], 1))
		if err == nil {
			t.Fatal("dialled across the cut")
		}
		if took := time.Since(began); took != memHandshakeTimeout {
			t.Errorf("a dial across the cut failed after %v, want the handshake timeout %v (%v)", took, memHandshakeTimeout, err)
		}
		l.setCut(false)
		if err := hs[0].Connect(network.WithForceDirectDial(ctx, "test"), addrInfo(t, hs[1], 1)); err != nil {
			t.Fatalf("after the heal: %v", err)
		}
	})
}

func TestStreamLinksCrashAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, hs := streamPeers(t, 2)
		ctx := context.Background()
		if err := hs[0].Connect(ctx, addrInfo(t, hs[1], 1)); err != nil {
			t.Fatal(err)
		}
		// A reset reaches the other end as the remote's.
		hs[1].SetStreamHandler("/test/reset/1", func(s network.Stream) {
			s.Read(make([]byte, 1))
			s.Reset()
		})
		s, err := hs[0].NewStream(ctx, hs[1].ID(), "/test/reset/1")
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("x"))
		_, err = s.Read(make([]byte, 1))
		var se *network.StreamError
		if !errors.As(err, &se) || !se.Remote || !errors.Is(err, network.ErrReset) {
			t.Errorf("read after the remote's reset: %v, want a remote stream reset", err)
		}
		s.Close()

		// A read deadline on a quiet stream.
		s, err = hs[0].NewStream(ctx, hs[1].ID(), echoProto)
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read past its deadline: %v", err)
		}
		s.Reset()

		// A crash: the survivor's connection closes after the idle timeout, not before.
		l.kill(1)
		hs[1].Close()
		time.Sleep(memIdleTimeout - time.Second)
		synctest.Wait()
		if len(hs[0].Network().ConnsToPeer(hs[1].ID())) == 0 {
			t.Error("the crash was noticed before the idle timeout: a crashed peer says nothing")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(hs[0].Network().ConnsToPeer(hs[1].ID())); n != 0 {
			t.Errorf("%d connections to a crashed peer after the idle timeout", n)
		}
	})
}

func TestStreamLinksCheckThePeerID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, hs := streamPeers(t, 3)
		wrong := peer.AddrInfo{ID: hs[2].ID(), Addrs: []ma.Multiaddr{ma.StringCast(listenAddr(1))}}
		if err := hs[0].Connect(context.Background(), wrong); err == nil {
			t.Fatal("connected to peer 1's address as peer 2")
		}
	})
}

// A drained stream gives its burst's buffer back, and keeps a small one.
func TestMemStreamDrainedBufferReleased(t *testing.T) {
	s := newMemStream(nil)
	big := bytes.Repeat([]byte{7}, 256<<10)
	s.push(big)
	got := make([]byte, 0, len(big))
	b := make([]byte, 32<<10)
	for len(got) < len(big) {
		n, err := s.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:n]...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("read back other bytes")
	}
	if c := s.buf.Cap(); c > keepReadBuffer {
		t.Fatalf("a drained stream keeps a %d-byte buffer", c)
	}
	s.push([]byte("small"))
	if n, err := s.Read(b); err != nil || string(b[:n]) != "small" {
		t.Fatalf("after the release: %q, %v", b[:n], err)
	}
	s.push([]byte("again"))
	if c := s.buf.Cap(); c == 0 || c > keepReadBuffer {
		t.Fatalf("a small buffer of %d bytes", c)
	}
}

// TestPipeKeepsOrderWithoutGrowing: a stream that always has writes in flight (one a millisecond,
// across an Atlantic) never drains its pipe. Every write arrives, in order, and the pipe's queue
// stays the size of what is in flight rather than of everything ever sent.
func TestPipeKeepsOrderWithoutGrowing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, hs := streamPeersTicking(t, 3, 1)
		const writes = 3000
		got := make(chan []byte, 1)
		hs[2].SetStreamHandler("/test/sink/1", func(s network.Stream) {
			b, _ := io.ReadAll(s)
			got <- b
		})
		ctx := context.Background()
		if err := hs[0].Connect(ctx, addrInfo(t, hs[2], 2)); err != nil {
			t.Fatal(err)
		}
		s, err := hs[0].NewStream(ctx, hs[2].ID(), "/test/sink/1")
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		maxCap := 0
		for i := range writes {
			w := []byte{byte(i >> 8), byte(i)}
			want = append(want, w...)
			if _, err := s.Write(w); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
			l.mem.mu.Lock()
			for c := range l.mem.pairs {
				c.out.mu.Lock()
				maxCap = max(maxCap, cap(c.out.q))
				c.out.mu.Unlock()
			}
			l.mem.mu.Unlock()
		}
		s.CloseWrite()
		if b := <-got; !bytes.Equal(b, want) {
			t.Fatalf("received %d bytes, not the %d written in order", len(b), len(want))
		}
		inFlight := int(l.mem.rtt(0, 2)/2/time.Millisecond) + 1
		if maxCap > 4*inFlight {
			t.Errorf("a pipe's queue grew to %d frames with about %d in flight", maxCap, inFlight)
		}
		t.Logf("%d frames in flight, queue capacity at most %d", inFlight, maxCap)
	})
}
