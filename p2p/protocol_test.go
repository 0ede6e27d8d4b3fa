package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

func TestProtocolID(t *testing.T) {
	for _, tt := range []struct{ name, version, want string }{
		{"match", "1.0.0", "/rendermesh/match/1.0.0"},
		{"session-offer", "2.1.0", "/rendermesh/session-offer/2.1.0"},
	} {
		if got := ProtocolID(tt.name, tt.version); string(got) != tt.want {
			t.Errorf("ProtocolID(%q, %q) = %q, want %q", tt.name, tt.version, got, tt.want)
		}
	}
}

func TestWriteReadMsg(t *testing.T) {
	_, id := testKey(t, 1)
	msgs := []proto.Message{
		testHeartbeat(id, 1, testEpoch),
		testRecord(id, 2, testEpoch, time.Hour),
		&pb.Heartbeat{}, // zero length: a one-byte frame
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := WriteMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	stream := buf.Bytes()
	readers := map[string]func() io.Reader{
		"byte reader":  func() io.Reader { return bytes.NewReader(stream) },
		"plain reader": func() io.Reader { return &plainReader{data: stream} },
	}
	for name, newReader := range readers {
		t.Run(name, func(t *testing.T) {
			r := newReader()
			for i, want := range msgs {
				got := want.ProtoReflect().New().Interface()
				if err := ReadMsg(r, got, 4<<10); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("message %d: got %v, want %v", i, got, want)
				}
			}
			if err := ReadMsg(r, &pb.Heartbeat{}, 4<<10); err != io.EOF {
				t.Fatalf("after the last message: %v, want io.EOF", err)
			}
		})
	}
}

func TestReadMsgTooLarge(t *testing.T) {
	_, id := testKey(t, 1)
	var buf bytes.Buffer
	hb := testHeartbeat(id, 1, testEpoch)
	if err := WriteMsg(&buf, hb); err != nil {
		t.Fatal(err)
	}
	size := proto.Size(hb)
	r := bytes.NewReader(buf.Bytes())
	err := ReadMsg(r, &pb.Heartbeat{}, size-1)
	if !errors.Is(err, ErrMsgTooLarge) {
		t.Fatalf("ReadMsg with limit %d of a %d-byte message: %v, want ErrMsgTooLarge", size-1, size, err)
	}
	if left := r.Len(); left != size {
		t.Errorf("%d bytes left, want the %d-byte body unread", left, size)
	}
	// A huge prefix is refused before anything is allocated; a negative limit refuses all.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if err := ReadMsg(bytes.NewReader(huge), &pb.Heartbeat{}, 1<<20); !errors.Is(err, ErrMsgTooLarge) {
		t.Errorf("huge prefix: %v", err)
	}
	if err := ReadMsg(bytes.NewReader(buf.Bytes()), &pb.Heartbeat{}, -1); !errors.Is(err, ErrMsgTooLarge) {
		t.Errorf("negative limit: %v", err)
	}
	if err := ReadMsg(bytes.NewReader(buf.Bytes()), &pb.Heartbeat{}, size); err != nil {
		t.Errorf("limit equal to the size: %v", err)
	}
}

func TestReadMsgTruncated(t *testing.T) {
	_, id := testKey(t, 1)
	var buf bytes.Buffer
	if err := WriteMsg(&buf, testHeartbeat(id, 1, testEpoch)); err != nil {
		t.Fatal(err)
	}
	// Every proper, non-empty prefix of a frame (a 2-byte length prefix here) ends unexpectedly.
	frame := buf.Bytes()
	for n := 1; n < len(frame); n++ {
		for _, r := range []io.Reader{bytes.NewReader(frame[:n]), &plainReader{data: frame[:n]}} {
			if err := ReadMsg(r, &pb.Heartbeat{}, 4<<10); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%d of %d bytes through %T: %v, want io.ErrUnexpectedEOF", n, len(frame), r, err)
			}
		}
	}
	if err := ReadMsg(bytes.NewReader(nil), &pb.Heartbeat{}, 4<<10); err != io.EOF {
		t.Errorf("no bytes: %v, want io.EOF", err)
	}
	if err := ReadMsg(bytes.NewReader([]byte{3, 0xff, 0xff, 0xff}), &pb.Heartbeat{}, 4<<10); err == nil {
		t.Error("garbage body decoded")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteMsgError(t *testing.T) {
	if err := WriteMsg(failingWriter{}, &pb.Heartbeat{Seq: 1}); err == nil {
		t.Fatal("WriteMsg to a failing writer succeeded")
	}
}

func TestHandleRequest(t *testing.T) {
	nets := newEnsemble(t, ensembleSpec{full: 2})
	server, client := nets[0], nets[1]
	const max = 4 << 10

	echo := ProtocolID("test-echo", "1.0.0")
	server.Handle(echo, 5*time.Second, func(ctx context.Context, remote peer.ID, s io.ReadWriter) error {
		var hb pb.Heartbeat
		if err := ReadMsg(s, &hb, max); err != nil {
			return err
		}
		if peer.ID(hb.PeerId) != remote {
			return fmt.Errorf("request names %s, sent by %s", peer.ID(hb.PeerId), remote)
		}
		hb.Seq++
		return WriteMsg(s, &hb)
	})
	failing := ProtocolID("test-fail", "1.0.0")
	server.Handle(failing, 5*time.Second, func(ctx context.Context, remote peer.ID, s io.ReadWriter) error {
		return errors.New("refused")
	})
	slow := ProtocolID("test-slow", "1.0.0")
	server.Handle(slow, 200*time.Millisecond, func(ctx context.Context, remote peer.ID, s io.ReadWriter) error {
		<-ctx.Done() // the handler's deadline
		return ctx.Err()
	})
	stuck := ProtocolID("test-stuck", "1.0.0")
	release := make(chan struct{})
	defer close(release)
	server.Handle(stuck, time.Minute, func(ctx context.Context, remote peer.ID, s io.ReadWriter) error {
		<-release // never answers while the test runs
		return errors.New("released")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The same requests from another node and from the server itself: libp2p does not dial its own
	// host, so Request hands those to the server's handler in process.
	for _, from := range []*Net{client, server} {
		name := "remote"
		if from == server {
			name = "self"
		}
		t.Run(name, func(t *testing.T) {
			t.Run("echo", func(t *testing.T) {
				for seq := range uint64(3) {
					var resp pb.Heartbeat
					req := testHeartbeat(from.ID(), seq, testEpoch)
					if err := from.Request(ctx, server.ID(), echo, req, &resp, max); err != nil {
						t.Fatal(err)
					}
					if resp.Seq != seq+1 || resp.LoadPermille != req.LoadPermille {
						t.Fatalf("response %v to seq %d", &resp, seq)
					}
				}
			})
			t.Run("response too large", func(t *testing.T) {
				var resp pb.Heartbeat
				err := from.Request(ctx, server.ID(), echo, testHeartbeat(from.ID(), 1, testEpoch), &resp, 8)
				if !errors.Is(err, ErrMsgTooLarge) {
					t.Fatalf("%v, want ErrMsgTooLarge", err)
				}
			})
			t.Run("handler error resets the stream", func(t *testing.T) {
				if err := from.Request(ctx, server.ID(), failing, &pb.Heartbeat{}, &pb.Heartbeat{}, max); err == nil {
					t.Fatal("request succeeded")
				}
			})
			t.Run("handler deadline", func(t *testing.T) {
				if err := from.Request(ctx, server.ID(), slow, &pb.Heartbeat{}, &pb.Heartbeat{}, max); err == nil {
					t.Fatal("request succeeded")
				}
			})
			t.Run("request deadline", func(t *testing.T) {
				short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				err := from.Request(short, server.ID(), stuck, &pb.Heartbeat{}, &pb.Heartbeat{}, max)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%v, want context.DeadlineExceeded", err)
				}
			})
			t.Run("unsupported protocol", func(t *testing.T) {
				err := from.Request(ctx, server.ID(), ProtocolID("test-none", "1.0.0"), &pb.Heartbeat{}, &pb.Heartbeat{}, max)
				if err == nil {
					t.Fatal("request succeeded")
				}
				if from == server && !errors.Is(err, ErrNoLocalHandler) {
					t.Fatalf("%v, want ErrNoLocalHandler", err)
				}
				// The protocol is selected optimistically: the refusal arrives with the first read.
				if from == client && !errors.Is(err, ErrProtocolNotSupported) {
					t.Fatalf("%v, want ErrProtocolNotSupported", err)
				}
			})
		})
	}
	t.Run("self after close", func(t *testing.T) {
		n := startNet(t, testConfig(t, 7))
		n.Handle(echo, time.Second, func(context.Context, peer.ID, io.ReadWriter) error { return nil })
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		err := n.Request(ctx, n.ID(), echo, &pb.Heartbeat{}, &pb.Heartbeat{}, max)
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%v, want net.ErrClosed", err)
		}
	})
}
