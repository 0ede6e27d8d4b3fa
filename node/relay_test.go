package node

import (
	"strings"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rendermesh/rendermesh/render/turn"
)

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Credentials an indexer mints with its grant are the ones the embedded relay derives again from
// the username; another indexer's, another epoch's or an over-long one are not.
func TestRelaySecretForIndexerGrant(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Unix(1_800_000_000, 0))
	r := &relaySvc{n: &Node{opts: Options{Clock: clk}}, secret: []byte("master secret"), maxTTL: 2 * time.Hour}
	ix, other := testPeer(t), testPeer(t)
	grant := indexerSecret(r.secret, 7, ix)
	user, pass := turn.Credentials(grant, userPrefix(7, ix)+"00aa", time.Hour, clk.Now())
	sec, err := r.secretFor(user)
	if err != nil {
		t.Fatal(err)
	}
	if _, want := turn.Credentials(sec, userPrefix(7, ix)+"00aa", time.Hour, clk.Now()); want != pass {
		t.Fatal("the relay derives another secret than the indexer was granted")
	}
	// Claiming another indexer's prefix with one's own grant yields a password the relay rejects.
	forged, fpass := turn.Credentials(grant, userPrefix(7, other)+"00aa", time.Hour, clk.Now())
	sec, err = r.secretFor(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, want := turn.Credentials(sec, userPrefix(7, other)+"00aa", time.Hour, clk.Now()); want == fpass {
		t.Fatal("one indexer's grant mints valid credentials in another's name")
	}
	for name, u := range map[string]string{
		"no prefix":    "1800003600:00aa",
		"bad epoch":    "1800003600:ex." + ix.String() + ".00aa",
		"bad indexer":  "1800003600:e7.notapeer.00aa",
		"beyond max":   strings.Replace(user, "1800003600", "1800010801", 1),
		"no separator": "e7." + ix.String() + ".00aa",
	} {
		if _, err := r.secretFor(u); err == nil {
			t.Errorf("%s: %q accepted", name, u)
		}
	}
}

func TestRelayConfigValidate(t *testing.T) {
	for name, rc := range map[string]RelayConfig{
		"no public ip":        {Enabled: true, Listen: "0.0.0.0:3478"},
		"ipv6 public ip":      {Enabled: true, Listen: "0.0.0.0:3478", PublicIP: "2001:db8::1"},
		"bad listen":          {Enabled: true, Listen: "nowhere", PublicIP: "203.0.113.7"},
		"coturn no secret":    {Enabled: true, URLs: []string{"turn:203.0.113.7:3478"}},
		"coturn not turn url": {Enabled: true, URLs: []string{"http://203.0.113.7"}, Secret: "s"},
	} {
		if err := rc.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, rc := range map[string]RelayConfig{
		"off":      {},
		"embedded": {Enabled: true, Listen: "0.0.0.0:3478", PublicIP: "203.0.113.7"},
		"coturn":   {Enabled: true, URLs: []string{"turn:203.0.113.7:3478?transport=udp"}, Secret: "s"},
	} {
		if err := rc.validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
