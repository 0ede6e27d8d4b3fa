package p2p

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

func shareVerified(t testing.TB, size int) {
	t.Helper()
	ShareVerifiedEnvelopes(size)
	t.Cleanup(func() { ShareVerifiedEnvelopes(0) })
}

// With verified envelopes shared, an envelope opened again is decoded without a second signature
// check, to the same message and signer; everything that differs from it is checked in full.
func TestSharedVerifiedEnvelopes(t *testing.T) {
	shareVerified(t, 16)
	key, id := testKey(t, 1)
	want := testRecord(id, 3, testEpoch, time.Hour)
	data := sealRecord(t, want, key)
	open := func(kind Kind, b []byte) (*pb.ContainerRecord, error) {
		var rec pb.ContainerRecord
		signer, err := Open(kind, b, &rec)
		if err == nil && signer != id {
			t.Errorf("signer %s, want %s", signer, id)
		}
		return &rec, err
	}
	hits := verifiedHits.Load()
	for i := range 2 {
		got, err := open(KindContainerRecord, data)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("open %d: decoded %v, want %v", i, got, want)
		}
	}
	if n := verifiedHits.Load() - hits; n != 1 {
		t.Fatalf("%d signature checks spared, want 1 (the second open)", n)
	}

	// The same envelope with its signature's last byte changed (the signature is the envelope's
	// last field, so it stays canonically encoded).
	forged := bytes.Clone(data)
	forged[len(forged)-1] ^= 1
	if _, err := open(KindContainerRecord, forged); !errors.Is(err, ErrSignature) {
		t.Errorf("forged signature: %v, want ErrSignature", err)
	}
	// The same bytes under another domain, with the same payload type: the signature does not
	// cover that domain.
	other := Kind{Domain: "rendermesh-other", Codec: KindContainerRecord.Codec}
	if _, err := open(other, data); !errors.Is(err, ErrSignature) {
		t.Errorf("another domain: %v, want ErrSignature", err)
	}
	// Another signer's envelope of the same record: a key of its own.
	key2, id2 := testKey(t, 2)
	if signer, err := Open(KindContainerRecord, sealRecord(t, want, key2), &pb.ContainerRecord{}); err != nil || signer != id2 {
		t.Errorf("another signer's envelope: signer %s, %v; want %s", signer, err, id2)
	}
	// A non-canonical encoding of the remembered envelope is refused before any memory is asked.
	if _, err := open(KindContainerRecord, append(bytes.Clone(data), 0x2a, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("re-encoded: %v, want ErrMalformed", err)
	}
	if n := verifiedHits.Load() - hits; n != 1 {
		t.Errorf("%d signature checks spared in all, want still 1", n)
	}

	// Off: every open checks.
	ShareVerifiedEnvelopes(0)
	if _, err := open(KindContainerRecord, data); err != nil {
		t.Fatal(err)
	}
	if n := verifiedHits.Load() - hits; n != 1 {
		t.Errorf("sharing off: %d checks spared in all, want still 1", n)
	}
}

// The memory is bounded: the least recently opened envelope is checked again once forgotten.
func TestSharedVerifiedEnvelopesForget(t *testing.T) {
	shareVerified(t, 2)
	var envs [][]byte
	for i := range 3 {
		key, id := testKey(t, int64(10+i))
		envs = append(envs, sealRecord(t, testRecord(id, 1, testEpoch, time.Hour), key))
	}
	for _, e := range envs {
		if _, _, err := OpenContainerRecord(e); err != nil {
			t.Fatal(err)
		}
	}
	hits := verifiedHits.Load()
	for _, i := range []int{2, 1, 0} { // 2 and 1 remembered; 0 forgotten, checked again
		if _, _, err := OpenContainerRecord(envs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n := verifiedHits.Load() - hits; n != 2 {
		t.Errorf("%d checks spared, want 2", n)
	}
}

func BenchmarkOpenContainerRecordShared(b *testing.B) {
	shareVerified(b, 16)
	key, id := testKey(b, 1)
	data := sealRecord(b, testRecord(id, 1, testEpoch, time.Hour), key)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := OpenContainerRecord(data); err != nil {
			b.Fatal(err)
		}
	}
}
