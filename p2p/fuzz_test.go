package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
)

// Fuzz tests of every decoder of bytes that arrive from the network. Each is seeded with valid
// inputs; run one with `go test -run XXX -fuzz FuzzName ./p2p`.

func FuzzOpenContainerRecord(f *testing.F) {
	key, id := testKey(f, 1)
	valid := sealRecord(f, testRecord(id, 1, testEpoch, time.Hour), key)
	f.Add(valid)
	f.Add(sealRecord(f, &pb.ContainerRecord{PeerId: []byte(id), ExpiresUnixMs: 1}, key))
	f.Add(sealHeartbeat(f, testHeartbeat(id, 1, testEpoch), key))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, signer, err := OpenContainerRecord(data)
		if err != nil {
			if !errors.Is(err, ErrRecord) || RecordReason(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			if rec != nil || signer != "" {
				t.Fatal("results returned with an error")
			}
			return
		}
		if len(data) > MaxRecordSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if peer.ID(rec.PeerId) != signer || rec.ExpiresUnixMs <= rec.IssuedUnixMs {
			t.Fatalf("accepted record %v signed by %s", rec, signer)
		}
	})
}

func FuzzOpenHeartbeat(f *testing.F) {
	key, id := testKey(f, 1)
	valid := sealHeartbeat(f, testHeartbeat(id, 1, testEpoch), key)
	f.Add(valid)
	f.Add(sealHeartbeat(f, &pb.Heartbeat{PeerId: []byte(id), Region: "x"}, key))
	f.Add(sealRecord(f, testRecord(id, 1, testEpoch, time.Hour), key))
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, signer, err := OpenHeartbeat(data)
		if err != nil {
			if hb != nil || signer != "" {
				t.Fatal("results returned with an error")
			}
			return
		}
		if len(data) > MaxHeartbeatSize || peer.ID(hb.PeerId) != signer || hb.LoadPermille > 1000 || hb.Region == "" {
			t.Fatalf("accepted heartbeat %v signed by %s", hb, signer)
		}
	})
}

func FuzzValidateContainerRecord(f *testing.F) {
	key, id := testKey(f, 1)
	valid := sealRecord(f, testRecord(id, 1, testEpoch, time.Hour), key)
	f.Add(ContainerRecordKey(id), valid)
	f.Add(ContainerRecordKey(id), valid[:len(valid)-3])
	f.Add("/"+ContainerRecordNamespace+"/", valid)
	f.Add("/other/"+string(id), valid)
	f.Add("", []byte{})
	// One validator for the whole run: its replay memory carries over between inputs, as a DHT
	// node's does.
	v := NewContainerRecordValidator(newMockClock(), NewMetrics(nil))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		err := v.Validate(key, value)
		if err != nil {
			if !errors.Is(err, ErrRecord) || RecordReason(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// What Validate accepts, Select can pick.
		if i, err := v.Select(key, [][]byte{[]byte("junk"), value}); i != 1 || err != nil {
			t.Fatalf("Select = %d, %v after Validate accepted the value", i, err)
		}
	})
}

func FuzzCapabilityCID(f *testing.F) {
	for _, key := range []string{"gpu:H100", "region:u33", "app:demo", "gpu:", "cpu:x", "gpu:a b", "app:" + strings.Repeat("x", 65), "gpu:é", ""} {
		f.Add(key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		c, err := CapabilityCID(key)
		if want := validCapabilityKey(key); (err == nil) != want {
			t.Fatalf("CapabilityCID(%q) error %v, valid by the naive rule: %v", key, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrCapability) {
				t.Fatalf("error %v does not wrap ErrCapability", err)
			}
			return
		}
		if c.Version() != 1 || c.Type() != cid.Raw {
			t.Fatalf("CID %s is not a raw CIDv1", c)
		}
		want, _ := mh.Sum([]byte("/rendermesh/capability/1/"+key), mh.SHA2_256, -1)
		if !bytes.Equal(c.Hash(), want) {
			t.Fatalf("CID %s does not hash the key", c)
		}
	})
}

// validCapabilityKey is the naive statement of a capability key's rule.
func validCapabilityKey(key string) bool {
	i := strings.IndexByte(key, ':')
	if i < 0 {
		return false
	}
	kind, value := key[:i], key[i+1:]
	if kind != "gpu" && kind != "region" && kind != "app" {
		return false
	}
	if len(value) < 1 || len(value) > 64 {
		return false
	}
	for i := 0; i < len(value); i++ {
		if value[i] < '!' || value[i] > '~' {
			return false
		}
	}
	return true
}

func FuzzReadMsg(f *testing.F) {
	_, id := testKey(f, 1)
	var buf bytes.Buffer
	if err := WriteMsg(&buf, testHeartbeat(id, 1, testEpoch)); err != nil {
		f.Fatal(err)
	}
	valid := buf.Bytes()
	f.Add(valid)
	f.Add(append(append([]byte{}, valid...), valid...))
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		// Once through an io.ByteReader, once through a reader that is not one: same outcome.
		for _, r := range []interface {
			io.Reader
			Len() int
		}{bytes.NewReader(data), &plainReader{data: data}} {
			var hb pb.Heartbeat
			err := ReadMsg(r, &hb, max)
			consumed := len(data) - r.Len()
			size, n := binary.Uvarint(data)
			switch {
			case err == nil:
				if n <= 0 || size > max || consumed != n+int(size) {
					t.Fatalf("read %d of %d bytes for a message of %d (prefix %d)", consumed, len(data), size, n)
				}
			case errors.Is(err, ErrMsgTooLarge):
				if n <= 0 || size <= max || consumed != n {
					t.Fatalf("too large: prefix %d (%d bytes), read %d bytes", size, n, consumed)
				}
			case len(data) == 0:
				if err != io.EOF {
					t.Fatalf("empty input: %v, want io.EOF", err)
				}
			}
		}
	})
}

// plainReader is an io.Reader without ReadByte that returns at most 3 bytes a call.
type plainReader struct{ data []byte }

func (r *plainReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *plainReader) Len() int { return len(r.data) }

func FuzzDirectAnswer(f *testing.F) {
	key, id := testKey(f, 1)
	_, other := testKey(f, 2)
	answer := func(k string, value []byte, typ dhtpb.Message_MessageType) []byte {
		m := dhtpb.NewMessage(typ, []byte(k), 0)
		if value != nil {
			m.Record = &recpb.Record{Key: []byte(k), Value: value}
		}
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	valid := sealRecord(f, testRecord(id, 1, testEpoch, time.Hour), key)
	f.Add(answer(ContainerRecordKey(id), valid, dhtpb.Message_GET_VALUE))
	f.Add(answer(ContainerRecordKey(other), valid, dhtpb.Message_GET_VALUE))
	f.Add(answer(ContainerRecordKey(id), valid, dhtpb.Message_PUT_VALUE))
	f.Add(answer(ContainerRecordKey(id), nil, dhtpb.Message_GET_VALUE))
	f.Add(answer(ContainerRecordKey(id), valid[:len(valid)/2], dhtpb.Message_GET_VALUE))
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{})
	v := NewContainerRecordValidator(newMockClock(), NewMetrics(nil))
	f.Fuzz(func(t *testing.T, payload []byte) {
		rec, err := decodeDirectAnswer(v, id, payload)
		if err != nil {
			if rec != nil {
				t.Fatal("a record returned with an error")
			}
			return
		}
		if peer.ID(rec.PeerId) != id {
			t.Fatalf("accepted a record of %s from an answer of %s", peer.ID(rec.PeerId), id)
		}
	})
}
