package simnet

import (
	"math"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// processTime is the process's own clocks: wall time (monotonic) and CPU time (user and system, every
// thread). Inside the bubble time.Now is simulated; these are read by system call, and tell what a
// span of simulated time cost the machine.
type processTime struct {
	wall, cpu time.Duration
}

// readProcessTime reads both clocks; zero where a clock cannot be read.
func readProcessTime() processTime {
	var p processTime
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		p.wall = time.Duration(ts.Nano())
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		p.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return p
}

// sub is what the process spent from q to p.
func (p processTime) sub(q processTime) processTime {
	return processTime{wall: p.wall - q.wall, cpu: p.cpu - q.cpu}
}

// costs fills the summary's wall and CPU costs of the run's phases: begin is read when the run began,
// start when the measured span began (zero if it never did), end when it ended. peers are the peers
// online at the span's end, simulated its length.
func (sum *Summary) costs(begin, start, end processTime, peers int, simulated time.Duration) {
	if start == (processTime{}) {
		sum.WarmupWallSeconds = round3(end.sub(begin).wall.Seconds())
		return
	}
	sum.WarmupWallSeconds = round3(start.sub(begin).wall.Seconds())
	span := end.sub(start)
	sum.MeasuredWallSeconds = round3(span.wall.Seconds())
	sum.MeasuredCPUSeconds = round3(span.cpu.Seconds())
	if peers > 0 && simulated > 0 {
		sum.CPUMsPerPeerSecond = round3(float64(span.cpu) / float64(time.Millisecond) / float64(peers) / simulated.Seconds())
	}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
