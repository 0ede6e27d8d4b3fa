package consumer

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rendermesh/rendermesh/p2p/pb"
	"github.com/rendermesh/rendermesh/roles/indexer"
)

// FuzzMatchResponseUnreachable: whatever an indexer's answer holds, the containers it names
// unreachable leave the consumer's next request valid: at most indexer.MaxExclude distinct IDs of
// 1 to indexer.MaxPeerIDBytes bytes, none the answer's slices themselves.
func FuzzMatchResponseUnreachable(f *testing.F) {
	seed, _ := proto.Marshal(&pb.MatchResponse{Refused: "reservation", Unreachable: [][]byte{[]byte("c1"), []byte("c2"), []byte("c1"), {}}})
	f.Add(seed, 3)
	f.Add([]byte{0x42, 0x00}, 0)
	f.Fuzz(func(t *testing.T, data []byte, already int) {
		resp := &pb.MatchResponse{}
		if proto.Unmarshal(data, resp) != nil {
			return
		}
		req := &pb.MatchRequest{RequestId: bytes.Repeat([]byte{1}, 16), App: "demo"}
		for i := range min(max(already, 0), indexer.MaxExclude) {
			req.Exclude = append(req.Exclude, []byte{byte(i), 0xff})
		}
		req.Exclude = exclude(req.Exclude, resp.Unreachable)
		if err := indexer.ValidateRequest(req); err != nil {
			t.Fatalf("the request after %d unreachable is invalid: %v", len(resp.Unreachable), err)
		}
		for i, x := range req.Exclude {
			for _, y := range req.Exclude[:i] {
				if bytes.Equal(x, y) {
					t.Fatalf("%q excluded twice", x)
				}
			}
			for _, u := range resp.Unreachable {
				if len(u) > 0 && len(x) > 0 && &x[0] == &u[0] {
					t.Fatal("the exclude list shares memory with the answer")
				}
			}
		}
	})
}
