package node

import (
	"bytes"
	"strconv"
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

// The embedded relay parses usernames from any STUN client: whatever it is sent, it answers with
// an error or with the secret of the epoch and indexer the username names, and never accepts an
// expiry beyond its limit.
func FuzzRelaySecretFor(f *testing.F) {
	clk := clock.NewMock()
	clk.Set(time.Unix(1_800_000_000, 0))
	r := &relaySvc{n: &Node{opts: Options{Clock: clk}}, secret: []byte("master secret"), maxTTL: 2 * time.Hour}
	ix := peer.ID("\x00\x24\x08\x01\x12\x20" + strings.Repeat("\x07", 32)) // an identity-hashed Ed25519 key
	f.Add("1800003600:" + userPrefix(7, ix) + "00aa")
	f.Add("1800003600:e7." + ix.String() + ".")
	f.Add("1800010801:e7." + ix.String() + ".00aa")
	f.Add("1800003600:e18446744073709551616.x.y")
	f.Add(":e..")
	f.Add("e7")
	f.Fuzz(func(t *testing.T, username string) {
		sec, err := r.secretFor(username)
		if err != nil {
			return
		}
		expiry, user, _ := strings.Cut(username, ":")
		parts := strings.SplitN(user[1:], ".", 3)
		epoch, err := strconv.ParseUint(parts[0], 10, 64)
		if err != nil {
			t.Fatalf("%q accepted with epoch %q", username, parts[0])
		}
		id, err := peer.Decode(parts[1])
		if err != nil {
			t.Fatalf("%q accepted with indexer %q", username, parts[1])
		}
		if !bytes.Equal(sec, indexerSecret(r.secret, epoch, id)) {
			t.Fatalf("%q: the secret is not indexer %s's of epoch %d", username, id, epoch)
		}
		exp, err := strconv.ParseInt(expiry, 10, 64)
		if err != nil || time.Unix(exp, 0).Sub(clk.Now()) > r.maxTTL {
			t.Fatalf("%q accepted with expiry %q beyond %v", username, expiry, r.maxTTL)
		}
	})
}
