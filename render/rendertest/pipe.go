// Package rendertest holds test helpers for the render path: an in-memory signalling pipe that
// stands in for /rendermesh/render/1.0.0, so that both ends of a session run in one process.
package rendertest

import (
	"io"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Pipe is one end of an in-memory signalling channel (a render.Signaller); messages are cloned so
// the ends share nothing.
type Pipe struct {
	in     <-chan *pb.RenderSignal
	out    chan<- *pb.RenderSignal
	closed chan struct{}
	once   *sync.Once
}

// NewPipe returns the two connected ends: the consumer's and the container's.
func NewPipe() (*Pipe, *Pipe) {
	a, b := make(chan *pb.RenderSignal, 64), make(chan *pb.RenderSignal, 64)
	closed, once := make(chan struct{}), &sync.Once{}
	return &Pipe{in: a, out: b, closed: closed, once: once}, &Pipe{in: b, out: a, closed: closed, once: once}
}

// Send delivers m to the other end, or fails once the pipe is closed.
func (p *Pipe) Send(m *pb.RenderSignal) error {
	select {
	case p.out <- proto.Clone(m).(*pb.RenderSignal):
		return nil
	case <-p.closed:
		return io.ErrClosedPipe
	}
}

// Recv waits for the other end's next message; io.EOF once the pipe is closed.
func (p *Pipe) Recv() (*pb.RenderSignal, error) {
	select {
	case m := <-p.in:
		return m, nil
	case <-p.closed:
		return nil, io.EOF
	}
}

// Close closes both ends.
func (p *Pipe) Close() { p.once.Do(func() { close(p.closed) }) }
