package turn

import (
	"strconv"
	"testing"
	"time"

	"github.com/rendermesh/rendermesh/internal/coturntest"
)

// Operators may run coturn instead of the embedded relay (with the flags coturntest.Flags lists):
// coturn must accept what Credentials mints, and refuse what it should.
func TestCoturnAcceptsOurCredentials(t *testing.T) {
	if err := coturntest.Available(); err != nil {
		t.Skipf("coturn interop not tested: %v", err)
	}
	secret := "coturn shared secret"
	addr := coturntest.Start(t, secret)

	now := time.Now() // coturn has its own clock: the real one
	username, password := Credentials([]byte(secret), "alice", time.Hour, now)
	relay, err := newClient(t, addr, username, password, nil).Allocate()
	if err != nil {
		t.Fatalf("coturn refused our credentials: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	roundTrip(t, relay, "through coturn")

	refused := []struct{ name, username, password string }{
		{"wrong secret", username, restPassword([]byte("not the secret"), username)},
		{"expired", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10) + ":alice", ""},
	}
	refused[1].password = restPassword([]byte(secret), refused[1].username)
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			if _, err := newClient(t, addr, r.username, r.password, nil).Allocate(); err == nil {
				t.Fatal("coturn accepted bad credentials")
			}
		})
	}
}
