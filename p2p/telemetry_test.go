package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// testTelemetryReport is a realistic report of id: samples readings of gpus H100s, 500 ms apart.
func testTelemetryReport(id peer.ID, samples, gpus int) *pb.TelemetryReport {
	r := &pb.TelemetryReport{Container: []byte(id), Nonce: []byte("fresh nonce"), RequestedUnixMs: 1_800_000_000_000}
	for i := range samples {
		s := &pb.TelemetrySample{AtUnixMs: r.RequestedUnixMs + int64(i)*500}
		for g := range gpus {
			s.Gpus = append(s.Gpus, &pb.GPUReading{
				Name: "NVIDIA H100 80GB HBM3", Uuid: "GPU-3f2a9c1e-8b7d-4e6f-a5c4-" + strings.Repeat("0", 10) + string(rune('a'+g%26)) + "f",
				MemoryBytes: 81559 << 20, MemoryUsedBytes: 4096<<20 + uint64(i)<<20,
				UtilizationPct: 12, MemoryUtilizationPct: 7, PowerMw: 118_431 + uint32(i*17), PowerLimitMw: 700_000,
				TemperatureC: 41, GraphicsClockMhz: 1755, MaxGraphicsClockMhz: 1980, MemoryClockMhz: 2619,
			})
		}
		r.Samples = append(r.Samples, s)
	}
	return r
}

func sealTelemetry(tb testing.TB, r *pb.TelemetryReport, seed int64) []byte {
	tb.Helper()
	key, _ := testKey(tb, seed)
	raw, err := Seal(KindTelemetry, r, key) // Seal, not SealTelemetryReport: tests seal bad reports too
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func TestTelemetryReportRoundTrip(t *testing.T) {
	key, id := testKey(t, 1)
	want := testTelemetryReport(id, 20, 8)
	raw, err := SealTelemetryReport(want, key)
	if err != nil {
		t.Fatal(err)
	}
	got, signer, err := OpenTelemetryReport(raw)
	if err != nil {
		t.Fatal(err)
	}
	if signer != id || !proto.Equal(got, want) {
		t.Fatalf("opened %v signed by %s, want %v signed by %s", got, signer, want, id)
	}
	refused := &pb.TelemetryReport{Container: []byte(id), Nonce: []byte{1}, Refused: "busy"}
	raw, err = SealTelemetryReport(refused, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := OpenTelemetryReport(raw); err != nil || got.Refused != "busy" {
		t.Fatalf("refusal opened as %v, %v", got, err)
	}
}

// A report is accepted only as signed, by its own container, within the size and field limits.
func TestOpenTelemetryReportRejects(t *testing.T) {
	_, id := testKey(t, 1)
	_, other := testKey(t, 2)
	valid := sealTelemetry(t, testTelemetryReport(id, 5, 2), 1)

	forged := bytes.Clone(valid)
	i := bytes.Index(forged, []byte("NVIDIA H100"))
	copy(forged[i:], "NVIDIA H200")

	key, _ := testKey(t, 1)
	wrongKind, err := Seal(KindAttestation, testTelemetryReport(id, 5, 2), key)
	if err != nil {
		t.Fatal(err)
	}

	mutate := func(f func(r *pb.TelemetryReport)) []byte {
		r := testTelemetryReport(id, 5, 2)
		f(r)
		return sealTelemetry(t, r, 1)
	}
	for name, raw := range map[string][]byte{
		"forged payload":        forged,
		"truncated":             valid[:len(valid)-1],
		"empty":                 {},
		"other kind":            wrongKind,
		"signed by another key": sealTelemetry(t, testTelemetryReport(id, 5, 2), 2),
		"claims another signer": mutate(func(r *pb.TelemetryReport) { r.Container = []byte(other) }),
		"oversize": mutate(func(r *pb.TelemetryReport) {
			*r = *testTelemetryReport(id, MaxTelemetrySamples, MaxTelemetryGPUs)
			for _, s := range r.Samples {
				for _, g := range s.Gpus {
					g.Name = strings.Repeat("x", MaxTelemetryStringSize)
				}
			}
		}),
		"too many samples":     sealTelemetry(t, testTelemetryReport(id, MaxTelemetrySamples+1, 1), 1),
		"too many gpus":        sealTelemetry(t, testTelemetryReport(id, 1, MaxTelemetryGPUs+1), 1),
		"no nonce":             mutate(func(r *pb.TelemetryReport) { r.Nonce = nil }),
		"long nonce":           mutate(func(r *pb.TelemetryReport) { r.Nonce = make([]byte, MaxTelemetryNonce+1) }),
		"long name":            mutate(func(r *pb.TelemetryReport) { r.Samples[1].Gpus[0].Name = strings.Repeat("x", 129) }),
		"long uuid":            mutate(func(r *pb.TelemetryReport) { r.Samples[1].Gpus[1].Uuid = strings.Repeat("x", 129) }),
		"long refusal":         mutate(func(r *pb.TelemetryReport) { r.Samples, r.Refused = nil, strings.Repeat("x", 129) }),
		"refused with samples": mutate(func(r *pb.TelemetryReport) { r.Refused = "busy" }),
		"samples back in time": mutate(func(r *pb.TelemetryReport) { r.Samples[3].AtUnixMs = r.Samples[2].AtUnixMs - 1 }),
	} {
		r, signer, err := OpenTelemetryReport(raw)
		if err == nil {
			t.Errorf("%s: accepted a report of %d samples (%d bytes) signed by %s", name, len(r.Samples), len(raw), signer)
		} else if !errors.Is(err, ErrBadTelemetry) {
			t.Errorf("%s: error %v does not wrap ErrBadTelemetry", name, err)
		}
	}
	// Equal timestamps are allowed (a coarse clock), and an honest 16-GPU report fits.
	if _, _, err := OpenTelemetryReport(mutate(func(r *pb.TelemetryReport) { r.Samples[3].AtUnixMs = r.Samples[2].AtUnixMs })); err != nil {
		t.Errorf("equal timestamps: %v", err)
	}
	if _, _, err := OpenTelemetryReport(sealTelemetry(t, testTelemetryReport(id, MaxTelemetrySamples, MaxTelemetryGPUs), 1)); err != nil {
		t.Errorf("the largest honest report: %v", err)
	}
}

func TestSealTelemetryReportRefusesOthersAndInvalid(t *testing.T) {
	key, id := testKey(t, 1)
	_, other := testKey(t, 2)
	if _, err := SealTelemetryReport(testTelemetryReport(other, 3, 1), key); !errors.Is(err, ErrBadTelemetry) {
		t.Errorf("sealed another container's report: %v", err)
	}
	r := testTelemetryReport(id, 3, 1)
	r.Nonce = nil
	if _, err := SealTelemetryReport(r, key); !errors.Is(err, ErrBadTelemetry) {
		t.Errorf("sealed a report without nonce: %v", err)
	}
}

func TestValidateTelemetryRequest(t *testing.T) {
	ok := func() *pb.TelemetryRequest {
		return &pb.TelemetryRequest{Nonce: []byte("n"), Samples: MinTelemetrySamples, SpacingMs: MinTelemetrySpacingMs}
	}
	for name, tc := range map[string]struct {
		mod   func(r *pb.TelemetryRequest)
		valid bool
	}{
		"least":          {func(r *pb.TelemetryRequest) {}, true},
		"most":           {func(r *pb.TelemetryRequest) { r.Nonce, r.Samples, r.SpacingMs = make([]byte, 64), 20, 1000 }, true},
		"no nonce":       {func(r *pb.TelemetryRequest) { r.Nonce = nil }, false},
		"long nonce":     {func(r *pb.TelemetryRequest) { r.Nonce = make([]byte, 65) }, false},
		"two samples":    {func(r *pb.TelemetryRequest) { r.Samples = 2 }, false},
		"21 samples":     {func(r *pb.TelemetryRequest) { r.Samples = 21 }, false},
		"spacing 99 ms":  {func(r *pb.TelemetryRequest) { r.SpacingMs = 99 }, false},
		"spacing 1001ms": {func(r *pb.TelemetryRequest) { r.SpacingMs = 1001 }, false},
	} {
		r := ok()
		tc.mod(r)
		err := ValidateTelemetryRequest(r)
		if (err == nil) != tc.valid || (err != nil && !errors.Is(err, ErrBadTelemetry)) {
			t.Errorf("%s: %v, want valid=%v", name, err, tc.valid)
		}
		if tc.valid && proto.Size(r) > MaxTelemetryRequestSize {
			t.Errorf("%s: %d bytes, above MaxTelemetryRequestSize", name, proto.Size(r))
		}
	}
	if ValidateTelemetryRequest(nil) == nil {
		t.Error("nil request accepted")
	}
}

func FuzzOpenTelemetryReport(f *testing.F) {
	_, id := testKey(f, 1)
	valid := sealTelemetry(f, testTelemetryReport(id, 3, 2), 1)
	f.Add(valid)
	f.Add(sealTelemetry(f, &pb.TelemetryReport{Container: []byte(id), Nonce: []byte{1}, Refused: "no gpu"}, 1))
	f.Add(sealTelemetry(f, testTelemetryReport(id, 3, 2), 2))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, signer, err := OpenTelemetryReport(data)
		if err != nil {
			if !errors.Is(err, ErrBadTelemetry) {
				t.Fatalf("error does not wrap ErrBadTelemetry: %v", err)
			}
			if r != nil || signer != "" {
				t.Fatal("results returned with an error")
			}
			return
		}
		if len(data) > MaxTelemetryReportSize || peer.ID(r.Container) != signer || len(r.Samples) > MaxTelemetrySamples ||
			len(r.Nonce) == 0 || len(r.Nonce) > MaxTelemetryNonce {
			t.Fatalf("accepted report %v signed by %s", r, signer)
		}
	})
}

func FuzzTelemetryRequest(f *testing.F) {
	for _, r := range []*pb.TelemetryRequest{
		{Nonce: []byte("nonce"), Samples: 5, SpacingMs: 250},
		{Nonce: make([]byte, 64), Samples: 20, SpacingMs: 1000},
		{Nonce: []byte{1}, Samples: 2, SpacingMs: 50},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(pb.TelemetryRequest)
		if err := ReadMsg(bytes.NewReader(append(binary.AppendUvarint(nil, uint64(len(data))), data...)), r, MaxTelemetryRequestSize); err != nil {
			return
		}
		if err := ValidateTelemetryRequest(r); err != nil {
			if !errors.Is(err, ErrBadTelemetry) {
				t.Fatalf("error does not wrap ErrBadTelemetry: %v", err)
			}
			return
		}
		if len(r.Nonce) == 0 || len(r.Nonce) > MaxTelemetryNonce || r.Samples < MinTelemetrySamples || r.Samples > MaxTelemetrySamples ||
			r.SpacingMs < MinTelemetrySpacingMs || r.SpacingMs > MaxTelemetrySpacingMs {
			t.Fatalf("accepted request %v", r)
		}
	})
}

func TestTelemetryReportOnStream(t *testing.T) {
	key, id := testKey(t, 1)
	raw, err := SealTelemetryReport(testTelemetryReport(id, 3, 1), key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTelemetryReport(&buf, raw); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after")
	r, signer, err := ReadTelemetryReport(&buf)
	if err != nil || signer != id || len(r.Samples) != 3 || buf.String() != "after" {
		t.Fatalf("read %v from %s, %v; left %q", r, signer, err, buf.String())
	}
	huge := binary.AppendUvarint(nil, MaxTelemetryReportSize+1)
	if _, _, err := ReadTelemetryReport(bytes.NewReader(huge)); !errors.Is(err, ErrMsgTooLarge) {
		t.Errorf("oversize length prefix: %v", err)
	}
	if _, _, err := ReadTelemetryReport(bytes.NewReader(append(binary.AppendUvarint(nil, 10), 1, 2))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
}
