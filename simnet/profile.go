package simnet

import (
	"errors"
	"io"
	"runtime/pprof"
	"sync"
	"time"
)

// spanProfiler starts and stops the process's CPU profile for code inside the bubble, so that a
// profile can cover the measured span alone (Config.CPUProfile). pprof.StartCPUProfile starts a
// goroutine that copies samples out every 100 ms: started inside the bubble, that goroutine would
// belong to it, sleep on its fake clock and keep it from ending. So a goroutine started outside
// the bubble, before it opens, starts and stops the profile, and code inside asks it to over
// channels made outside (waiting on them is not durable blocking: the clock stays put meanwhile).
type spanProfiler struct {
	w   io.Writer
	req chan bool // true: start, false: stop
	ack chan error

	mu      sync.Mutex
	started bool
	began   time.Time // on the bubble's clock
	ended   bool      // stopped, or the span ended before it began: nothing starts any more
}

// newSpanProfiler starts the outside goroutine; call close once the bubble has ended.
func newSpanProfiler(w io.Writer) *spanProfiler {
	p := &spanProfiler{w: w, req: make(chan bool), ack: make(chan error)}
	go func() {
		for start := range p.req {
			if start {
				p.ack <- pprof.StartCPUProfile(p.w)
				continue
			}
			pprof.StopCPUProfile()
			p.ack <- nil
		}
	}()
	return p
}

// start begins the profile, unless the span has already ended.
func (p *spanProfiler) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.ended {
		return nil
	}
	p.req <- true
	if err := <-p.ack; err != nil {
		p.ended = true
		return errors.Join(errors.New("simnet: the measured span's CPU profile"), err)
	}
	p.started, p.began = true, time.Now()
	return nil
}

// stop ends the profile (a profile never started stays empty) and reports whether it had begun.
func (p *spanProfiler) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return p.started
	}
	p.ended = true
	if p.started {
		p.req <- false
		<-p.ack
	}
	return p.started
}

// close ends the outside goroutine (and the profile, if the bubble ended without stopping it).
func (p *spanProfiler) close() {
	p.stop()
	close(p.req)
}
