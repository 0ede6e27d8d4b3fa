package container

import "github.com/rendermesh/rendermesh/p2p/pb"

// NewClaimingProbe returns a probe that advertises claimed's hardware but reads actual's: Hardware
// is claimed's (what the container's record advertises), Telemetry and Readings are actual's (what
// the machine really reads). It is a test seam for simulated cheaters in devnets and simnets, which
// claim a better GPU than they have so that checkers can be seen to catch them; a real container
// never uses it. Readings returns nothing when actual is not a Reader. Close closes both probes.
func NewClaimingProbe(claimed, actual Probe) Probe {
	return &claimingProbe{claimed: claimed, actual: actual}
}

type claimingProbe struct {
	claimed, actual Probe
}

var _ Reader = (*claimingProbe)(nil)

func (p *claimingProbe) Hardware() (*pb.Hardware, error)        { return p.claimed.Hardware() }
func (p *claimingProbe) Telemetry() ([]*pb.GPUTelemetry, error) { return p.actual.Telemetry() }

func (p *claimingProbe) Readings() ([]*pb.GPUReading, error) {
	r, ok := p.actual.(Reader)
	if !ok {
		return nil, nil
	}
	return r.Readings()
}

func (p *claimingProbe) Close() error {
	err := p.claimed.Close()
	if aerr := p.actual.Close(); err == nil {
		err = aerr
	}
	return err
}
