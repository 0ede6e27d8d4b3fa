package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// protocolPrefix starts every rendermesh stream protocol ID.
const protocolPrefix = "/rendermesh/"

// ProtocolID names version version of the stream protocol name: ProtocolID("match", "1.0.0") is
// "/rendermesh/match/1.0.0".
func ProtocolID(name, version string) protocol.ID {
	return protocol.ID(protocolPrefix + name + "/" + version)
}

// ErrMsgTooLarge is wrapped by ReadMsg when a message's length prefix exceeds the caller's limit.
var ErrMsgTooLarge = errors.New("p2p: message too large")

// WriteMsg writes m as a uvarint length prefix followed by its protobuf encoding, in one Write.
func WriteMsg(w io.Writer, m proto.Message) error {
	size := proto.Size(m)
	buf := make([]byte, 0, binary.MaxVarintLen64+size)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, m)
	if err != nil {
		return fmt.Errorf("p2p: encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("p2p: write %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// ReadMsg reads one message written by WriteMsg into m. A length prefix above max (bytes) fails with
// an error wrapping ErrMsgTooLarge before any of the body is read. It returns io.EOF when r ends
// before the first byte, and an error wrapping io.ErrUnexpectedEOF when it ends inside a message.
// ReadMsg never reads past the message, so r can carry more data after it.
func ReadMsg(r io.Reader, m proto.Message, max int) error {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = byteReader{r}
	}
	size, err := binary.ReadUvarint(br)
	if err == io.EOF {
		return io.EOF
	} else if err != nil {
		return fmt.Errorf("p2p: read message length: %w", err)
	}
	if max < 0 || size > uint64(max) {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMsgTooLarge, size, max)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("p2p: read message body: %w", err)
	}
	if err := proto.Unmarshal(buf, m); err != nil {
		return fmt.Errorf("p2p: decode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// byteReader reads one byte at a time from a reader that is not an io.ByteReader, so that reading a
// length prefix never consumes part of the body.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var p [1]byte
	for {
		n, err := b.r.Read(p[:])
		if n == 1 {
			return p[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Handle serves the request/response protocol id: for each inbound stream it calls fn with the remote
// peer and the stream, under a deadline of timeout (0: none) on both the stream and fn's context. The
// stream is closed when fn returns nil and reset when it returns an error, which is logged at debug
// level: the remote sees a reset stream, never our error text. Close resets open streams, so fn should
// block only on the stream or on ctx.
//
// Requests this node makes of itself (Request, SendSessionStats) reach fn in process: libp2p does not
// dial its own host, and one node may well hold both ends, e.g. an indexer reserving the container
// it also runs.
func (n *Net) Handle(id protocol.ID, timeout time.Duration, fn func(ctx context.Context, remote peer.ID, s io.ReadWriter) error) {
	n.mu.Lock()
	if n.local == nil {
		n.local = map[protocol.ID]localHandler{}
	}
	n.local[id] = localHandler{timeout: timeout, fn: fn}
	n.mu.Unlock()
	n.host.SetStreamHandler(id, func(s network.Stream) {
		remote := s.Conn().RemotePeer()
		ctx := context.Background()
		if timeout > 0 {
			// Deadlines of real sockets follow the real clock, whatever clock the protocol logic uses.
			deadline := time.Now().Add(timeout)
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			if err := s.SetDeadline(deadline); err != nil {
				n.log.Debug("stream deadline", "protocol", id, "peer", remote, "err", err)
				_ = s.Reset()
				return
			}
		}
		if err := fn(ctx, remote, s); err != nil {
			n.log.Debug("stream handler failed", "protocol", id, "peer", remote, "err", err)
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
}

// Request opens a stream of protocol id to p, writes req, and reads one response of at most max bytes
// into resp. ctx bounds the whole exchange: its deadline is set on the stream, and cancelling it
// resets the stream.
func (n *Net) Request(ctx context.Context, p peer.ID, id protocol.ID, req, resp proto.Message, max int) error {
	return n.RequestStamped(ctx, p, id, req, nil, resp, max)
}

// RequestStamped is Request with stamp, when not nil, run once the stream is open, just before req
// is written: a request that says how long its sender will wait for the answer (the match request's
// wait_ms) says it from there, after the dial, which the receiver's clock cannot see.
func (n *Net) RequestStamped(ctx context.Context, p peer.ID, id protocol.ID, req proto.Message, stamp func(), resp proto.Message, max int) error {
	s, err := n.requestStream(ctx, p, id)
	if err != nil {
		return err
	}
	if stamp != nil {
		stamp()
	}
	if deadline, ok := ctx.Deadline(); ok {
		if err := s.SetDeadline(deadline); err != nil {
			_ = s.Reset()
			return fmt.Errorf("p2p: %s stream to %s: set deadline: %w", id, p, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	fail := func(err error) error {
		_ = s.Reset()
		if cerr := contextErr(ctx); cerr != nil {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return fmt.Errorf("p2p: %s request to %s: %w", id, p, err)
	}
	if err := WriteMsg(s, req); err != nil {
		return fail(err)
	}
	// Best effort: a handler that has answered and closed may already have stopped our sending
	// side (QUIC's STOP_SENDING), which fails CloseWrite though the response is on its way.
	_ = s.CloseWrite()
	if err := ReadMsg(s, resp, max); err != nil {
		return fail(err)
	}
	_ = s.Close()
	return nil
}

// localHandler is a request/response handler registered with Handle.
type localHandler struct {
	timeout time.Duration
	fn      func(ctx context.Context, remote peer.ID, s io.ReadWriter) error
}

// ErrNoLocalHandler is returned for a request this node makes of itself on a protocol it does not
// serve.
var ErrNoLocalHandler = errors.New("this node does not serve the protocol itself")

// reqStream is what a request needs of a stream: a libp2p stream, or a pipe to this node's own
// handler.
type reqStream interface {
	io.ReadWriter
	SetDeadline(time.Time) error
	CloseWrite() error
	Close() error
	Reset() error
}

// requestStream opens a stream of protocol id to p for one request; to this node itself, a pipe to
// the handler Handle registered.
func (n *Net) requestStream(ctx context.Context, p peer.ID, id protocol.ID) (reqStream, error) {
	if p != n.host.ID() {
		return n.openStream(ctx, p, id)
	}
	n.mu.Lock()
	h, ok := n.local[id]
	closed := n.closed
	if ok && !closed {
		n.wg.Add(1)
	}
	n.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("p2p: open %s stream to self: %w", id, net.ErrClosed)
	case !ok:
		return nil, fmt.Errorf("p2p: open %s stream to self: %w", id, ErrNoLocalHandler)
	}
	ours, theirs := net.Pipe()
	go func() {
		defer n.wg.Done()
		ctx := n.ctx // the handler's context ends with the node, as an inbound stream's would be reset
		if h.timeout > 0 {
			deadline := time.Now().Add(h.timeout)
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			_ = theirs.SetDeadline(deadline)
		}
		stop := context.AfterFunc(ctx, func() { _ = theirs.Close() })
		defer stop()
		if err := h.fn(ctx, n.host.ID(), theirs); err != nil {
			n.log.Debug("stream handler failed", "protocol", id, "peer", "self", "err", err)
		}
		_ = theirs.Close()
	}()
	return pipeStream{ours}, nil
}

// pipeStream is the requester's end of a pipe to this node's own handler.
type pipeStream struct{ net.Conn }

// CloseWrite does nothing: requests are length-prefixed, so no handler waits for the end of input.
func (pipeStream) CloseWrite() error { return nil }

// Reset closes the pipe; the handler's reads and writes fail at once.
func (s pipeStream) Reset() error { return s.Close() }

// contextErr is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has passed: the stream's
// copy of the deadline can fire a moment before ctx's own timer.
func contextErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// writeFrame writes raw to w as one length-prefixed message (a uvarint length, then the bytes), in
// one Write; what names it in errors.
func writeFrame(w io.Writer, raw []byte, what string) error {
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(raw)), uint64(len(raw)))
	if _, err := w.Write(append(buf, raw...)); err != nil {
		return fmt.Errorf("p2p: write %s: %w", what, err)
	}
	return nil
}

// readFrame reads one message written by writeFrame. A length above max fails with an error
// wrapping ErrMsgTooLarge before the body is read.
func readFrame(r io.Reader, max int, what string) ([]byte, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = byteReader{r}
	}
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("p2p: read %s length: %w", what, err)
	}
	if size > uint64(max) {
		return nil, fmt.Errorf("%w: %s of %d bytes, limit %d", ErrMsgTooLarge, what, size, max)
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("p2p: read %s: %w", what, err)
	}
	return raw, nil
}
