package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/p2p"
	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/container"
	"github.com/rendermesh/rendermesh/roles/session"
)

// ReceiptInterval is how often container and consumer co-sign a usage receipt during a session.
const ReceiptInterval = time.Minute

// ReceiptsFile is the container's durable log of co-signed usage receipts in its data directory.
const ReceiptsFile = "receipts.log"

// receiptSink keeps co-signed receipts: a session.Log on disk, or memory for in-memory nodes.
type receiptSink interface {
	Append(rec []byte) error
}

type memReceipts struct {
	mu   sync.Mutex
	recs [][]byte
}

func (m *memReceipts) Append(rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, bytes.Clone(rec))
	return nil
}

// startContainerProtocols serves reservations from indexers and sessions from consumers.
func (n *Node) startContainerProtocols() {
	n.net.Handle(p2p.ProtoReserve, 5*time.Second, n.serveReserve)
	n.net.HandleStream(p2p.ProtoSession, n.serveSession)
	n.net.HandleStream(p2p.ProtoRender, n.serveRender)
	n.startTelemetryProtocol()
}

// activeIndexer reports whether p sits on the committee that is active now: only they may reserve.
func (n *Node) activeIndexer(p peer.ID) bool {
	if n.ep == nil {
		return false
	}
	for _, t := range n.ep.tr.Active(n.opts.Clock.Now()) {
		if t.ID == string(p) {
			return true
		}
	}
	return false
}

func (n *Node) serveReserve(ctx context.Context, remote peer.ID, rw io.ReadWriter) error {
	req := &pb.ReserveRequest{}
	if err := p2p.ReadMsg(rw, req, p2p.MaxReserveSize); err != nil {
		n.opts.Metrics.Reservations.WithLabelValues("bad_request").Inc()
		return err
	}
	var resp *pb.ReserveResponse
	if !n.activeIndexer(remote) {
		resp = &pb.ReserveResponse{Refused: "not_indexer", State: n.cont.State()}
	} else {
		resp = n.cont.Reserve(ctx, string(remote), req)
	}
	result := "reserved"
	if !resp.Reserved {
		result = resp.Refused
	}
	n.opts.Metrics.Reservations.WithLabelValues(result).Inc()
	return p2p.WriteMsg(rw, resp)
}

// sessionOpenTimeout bounds how long a consumer may take to present its ticket; ackTimeout how long
// the container waits for a receipt's countersignature.
const (
	sessionOpenTimeout = 10 * time.Second
	ackTimeout         = 10 * time.Second
)

// serveSession admits a consumer that presents its session ticket, then meters the session: a usage
// receipt each receipt interval and a final one at the end, each countersigned by the consumer and
// kept durably before the next.
func (n *Node) serveSession(ctx context.Context, s network.Stream) error {
	remote := s.Conn().RemotePeer()
	defer n.net.Hold(s)()
	_ = s.SetReadDeadline(time.Now().Add(sessionOpenTimeout))
	open := &pb.SessionOpen{}
	if err := p2p.ReadMsg(s, open, p2p.MaxSessionMsgSize); err != nil {
		return err
	}
	_ = s.SetReadDeadline(time.Time{})
	tk, signer, err := p2p.OpenSessionTicket(open.Ticket)
	if err == nil && string(tk.Container) != string(n.net.ID()) {
		err = fmt.Errorf("ticket names another container")
	}
	var sess *container.Session
	if err == nil {
		sess, err = n.cont.Arrive(ctx, string(remote), string(signer), tk)
	}
	if err != nil {
		n.log.Debug("session refused", "consumer", remote, "err", err)
		return p2p.WriteMsg(s, &pb.SessionMsg{Refused: err.Error()})
	}
	defer func() {
		n.renders.stop(tk.SessionId)
		if err := n.cont.EndSession(context.Background(), tk.SessionId); err != nil {
			n.log.Warn("end session", "err", err)
		}
	}()
	cs := &containerSession{n: n, s: s, end: sess.End, info: session.SessionInfo{
		ID: tk.SessionId, Container: tk.Container, Consumer: tk.Consumer, Indexer: tk.Indexer,
		Epoch: tk.Epoch, Price: tk.PriceMicros, Start: sess.Start,
	}}
	return cs.run(ctx)
}

type containerSession struct {
	n    *Node
	s    network.Stream
	info session.SessionInfo
	end  time.Time // renewals move it

	prev    *pb.UsageReceipt
	pending []byte // the receipt envelope awaiting its countersignature
}

func (cs *containerSession) run(ctx context.Context) error {
	n := cs.n
	clk := n.opts.Clock
	if err := p2p.WriteMsg(cs.s, &pb.SessionMsg{Accepted: true, EndsUnixMs: cs.end.UnixMilli()}); err != nil {
		return err
	}
	msgs := make(chan *pb.SessionMsg)
	readErr := make(chan error, 1)
	go func() {
		for {
			m := &pb.SessionMsg{}
			if err := p2p.ReadMsg(cs.s, m, p2p.MaxSessionMsgSize); err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := clk.Ticker(n.receiptInterval())
	defer tick.Stop()
	endTimer := clk.Timer(clk.Until(cs.end))
	defer endTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil // the consumer left without a final receipt; the last co-signed one stands
			}
			return err
		case <-tick.C:
			if cs.pending != nil {
				continue // the last one is not countersigned yet; receipts are cumulative
			}
			if err := cs.sendReceipt(false); err != nil {
				return err
			}
		case <-endTimer.C:
			return cs.finish(ctx, msgs, readErr)
		case m := <-msgs:
			switch {
			case len(m.Ack) > 0:
				if err := cs.keep(m.Ack); err != nil {
					return err
				}
			case m.Renew > 0:
				end, err := n.cont.Renew(ctx, cs.info.ID, m.Renew)
				reply := &pb.SessionMsg{EndsUnixMs: end.UnixMilli()}
				if err != nil {
					reply = &pb.SessionMsg{Refused: err.Error(), EndsUnixMs: cs.end.UnixMilli()}
				} else {
					cs.end = end
					endTimer.Reset(clk.Until(end))
				}
				if err := p2p.WriteMsg(cs.s, reply); err != nil {
					return err
				}
			case m.End:
				return cs.finish(ctx, msgs, readErr)
			}
		}
	}
}

// sendReceipt seals the next receipt and sends it; the previous one must have been countersigned.
func (cs *containerSession) sendReceipt(final bool) error {
	r := session.NextReceipt(cs.prev, cs.info, cs.n.opts.Clock.Now(), final)
	raw, err := cs.n.net.Seal(p2p.KindUsageReceipt, r)
	if err != nil {
		return err
	}
	if err := p2p.WriteMsg(cs.s, &pb.SessionMsg{Receipt: raw, End: final}); err != nil {
		return err
	}
	cs.prev, cs.pending = r, raw
	return nil
}

// keep verifies a countersignature of the pending receipt and stores it durably.
func (cs *containerSession) keep(ack []byte) error {
	r, err := p2p.OpenCosignedReceipt(ack)
	if err != nil {
		return err
	}
	inner := &pb.ReceiptAck{}
	if _, err := p2p.Open(p2p.KindReceiptAck, ack, inner); err != nil || !bytes.Equal(inner.Receipt, cs.pending) {
		return fmt.Errorf("session: countersignature is not of the receipt sent")
	}
	if string(r.Consumer) != string(cs.info.Consumer) {
		return fmt.Errorf("session: countersigned by another consumer")
	}
	if err := cs.n.receipts.Append(ack); err != nil {
		return fmt.Errorf("session: keep receipt %d: %w", r.Seq, err)
	}
	cs.pending = nil
	return nil
}

// finish waits for the countersignature of a receipt still in flight, then sends the final receipt
// and waits for its countersignature.
func (cs *containerSession) finish(ctx context.Context, msgs <-chan *pb.SessionMsg, readErr <-chan error) error {
	t := cs.n.opts.Clock.Timer(ackTimeout)
	defer t.Stop()
	finalSent := false
	for {
		if cs.pending == nil {
			if finalSent {
				return nil
			}
			if err := cs.sendReceipt(true); err != nil {
				return err
			}
			finalSent = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("session: receipt not countersigned within %s", ackTimeout)
		case err := <-readErr:
			return err
		case m := <-msgs:
			if len(m.Ack) > 0 {
				if err := cs.keep(m.Ack); err != nil {
					return err
				}
			}
		}
	}
}
