package p2p

import (
	"errors"
	"testing"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	recpb "github.com/libp2p/go-libp2p-record/pb"
)

func directAnswer(key string, value []byte) *dhtpb.Message {
	m := dhtpb.NewMessage(dhtpb.Message_GET_VALUE, []byte(key), 0)
	m.Record = &recpb.Record{Key: []byte(key), Value: value}
	return m
}

// TestDirectAnswerLeavesDHTValidator: a container's own answer may be a put ahead of the DHT's
// copies. It must not count as seen by the DHT's validator, which would then refuse those copies as
// replays, and a container that has just gone would vanish from queries before its record expires.
func TestDirectAnswerLeavesDHTValidator(t *testing.T) {
	key, id := testKey(t, 1)
	v := NewContainerRecordValidator(newMockClock(), nil)
	newer := sealRecord(t, testRecord(id, 5, testEpoch, time.Hour), key)
	older := sealRecord(t, testRecord(id, 4, testEpoch, time.Hour), key)
	rec, err := openDirectRecord(v, id, directAnswer(ContainerRecordKey(id), newer))
	if err != nil || rec.Seq != 5 {
		t.Fatalf("direct answer: %v, %v", rec, err)
	}
	if err := v.Validate(ContainerRecordKey(id), older); err != nil {
		t.Fatalf("the DHT's older copy refused after a direct answer: %v", err)
	}
}

func TestDirectAnswerRejects(t *testing.T) {
	key, id := testKey(t, 1)
	otherKey, other := testKey(t, 2)
	v := NewContainerRecordValidator(newMockClock(), nil)
	valid := sealRecord(t, testRecord(id, 1, testEpoch, time.Hour), key)
	forged := sealRecord(t, testRecord(id, 1, testEpoch, time.Hour), otherKey) // id's record, other's signature
	expired := sealRecord(t, testRecord(id, 1, testEpoch.Add(-2*time.Hour), time.Hour), key)
	wrongType := directAnswer(ContainerRecordKey(id), valid)
	wrongType.Type = dhtpb.Message_PUT_VALUE
	for name, m := range map[string]*dhtpb.Message{
		"another's record":   directAnswer(ContainerRecordKey(other), sealRecord(t, testRecord(other, 1, testEpoch, time.Hour), otherKey)),
		"forged signature":   directAnswer(ContainerRecordKey(id), forged),
		"expired":            directAnswer(ContainerRecordKey(id), expired),
		"not a GET_VALUE":    wrongType,
		"truncated envelope": directAnswer(ContainerRecordKey(id), valid[:len(valid)/2]),
	} {
		if rec, err := openDirectRecord(v, id, m); err == nil {
			t.Errorf("%s: accepted %v", name, rec)
		}
	}
	if _, err := openDirectRecord(v, id, dhtpb.NewMessage(dhtpb.Message_GET_VALUE, []byte(ContainerRecordKey(id)), 0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("no record: %v, want ErrNotFound", err)
	}
}
