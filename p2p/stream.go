package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
)

// dialTimeout bounds opening a stream whose context has no deadline, as the host's negotiation
// timeout does for its own NewStream.
const dialTimeout = 10 * time.Second

// openStream opens a stream of protocol id to p, dialling p first when there is no connection, and
// selects the protocol optimistically: the multistream-select header and the protocol name go out
// with the stream's first write, and the remote's confirmation is read before the first read returns
// data. A peer that does not speak id fails the first read with multistream's "protocol not
// supported".
//
// The host's NewStream waits for identify on a fresh connection before it opens the stream (to
// learn the remote's protocols, and select optimistically when it knows them); that costs a round
// trip on every request to a peer this node is not yet connected to. Every protocol this node
// opens is one of its own, which the remote serves by role (an indexer serves match, a container
// reserve), so the wait buys nothing: identify still runs on the new connection, alongside the
// request.
func (n *Net) openStream(ctx context.Context, p peer.ID, id protocol.ID) (network.Stream, error) {
	dctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, dialTimeout)
		defer cancel()
	}
	s, err := n.host.Network().NewStream(dctx, p)
	if err != nil {
		return nil, fmt.Errorf("p2p: open %s stream to %s: %w", id, p, err)
	}
	if err := s.SetProtocol(id); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("p2p: open %s stream to %s: %w", id, p, err)
	}
	return &lazyStream{Stream: s, rw: msmux.NewMSSelect(s, id), id: id}, nil
}

// ErrProtocolNotSupported is returned by the first read of a stream whose remote does not serve its
// protocol.
var ErrProtocolNotSupported = errors.New("p2p: remote does not serve the protocol")

// lazyStream is a stream whose protocol is selected on first use (go-libp2p's basic host wraps
// streams to peers whose protocols it knows the same way).
type lazyStream struct {
	network.Stream
	rw io.ReadWriteCloser
	id protocol.ID
}

// Read reads data; a remote that refuses the protocol shows as ErrProtocolNotSupported, whether its
// refusal or its reset of the stream (which may overtake the refusal) arrives first.
func (s *lazyStream) Read(b []byte) (int, error) {
	n, err := s.rw.Read(b)
	if err != nil && refusedProtocol(err) {
		err = fmt.Errorf("%w %s: %w", ErrProtocolNotSupported, s.id, err)
	}
	return n, err
}

func refusedProtocol(err error) bool {
	var se *network.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed {
		return true
	}
	return errors.Is(err, msmux.ErrNotSupported[protocol.ID]{})
}

func (s *lazyStream) Write(b []byte) (int, error) { return s.rw.Write(b) }

// Close closes the stream; a read deadline keeps it from waiting forever on a remote that never
// confirms the protocol.
func (s *lazyStream) Close() error {
	_ = s.SetReadDeadline(time.Now().Add(dialTimeout))
	return s.rw.Close()
}

// CloseWrite sends the handshake if nothing was written yet, then closes the sending side. A
// failed flush shows on the next read.
func (s *lazyStream) CloseWrite() error {
	if f, ok := s.rw.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
	return s.Stream.CloseWrite()
}
