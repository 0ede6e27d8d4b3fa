package turn

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"
)

var t0 = time.Unix(1_700_000_000, 0)

func TestCredentialsGolden(t *testing.T) {
	// Computed independently: base64(HMAC-SHA1("s3cret", "1700003600:alice")).
	username, password := Credentials([]byte("s3cret"), "alice", time.Hour, t0)
	if username != "1700003600:alice" || password != "YAFdW/YDZewZsR1QSgUk2IrfbRI=" {
		t.Fatalf("Credentials = %q, %q", username, password)
	}
}

// pion's own TURN REST handler accepts what we mint: the same key comes out of both.
func TestCredentialsMatchPion(t *testing.T) {
	secret := "another secret"
	now := time.Now()
	username, password := Credentials([]byte(secret), "bob:with:colons", time.Hour, now)
	logger := logging.NewDefaultLoggerFactory().NewLogger("test")
	key, ok := pionturn.LongTermTURNRESTAuthHandler(secret, logger)(username, DefaultRealm, &net.UDPAddr{})
	if !ok {
		t.Fatalf("pion refused %q", username)
	}
	if want := pionturn.GenerateAuthKey(username, DefaultRealm, password); string(key) != string(want) {
		t.Fatal("pion derives a different key from our credentials")
	}
}

func TestCheckUsername(t *testing.T) {
	long := "1700000000:" + strings.Repeat("x", maxUsernameLen-len("1700000000:"))
	tests := []struct {
		name     string
		username string
		want     error
	}{
		{"valid", "1700003600:alice", nil},
		{"valid through its expiry second", "1700000000:alice", nil},
		{"user id may hold colons", "1700003600:a:b:c", nil},
		{"user id may be empty", "1700003600:", nil},
		{"longest allowed", long, nil},
		{"expired a second ago", "1699999999:alice", ErrExpired},
		{"expired long ago", "1:alice", ErrExpired},
		{"zero expiry", "0:alice", ErrExpired},
		{"no colon", "1700003600", ErrMalformed},
		{"user id only", "alice", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"empty expiry", ":alice", ErrMalformed},
		{"user id first", "alice:1700003600", ErrMalformed},
		{"leading zero", "01700003600:alice", ErrMalformed},
		{"plus sign", "+1700003600:alice", ErrMalformed},
		{"minus sign", "-1700003600:alice", ErrMalformed},
		{"space", " 1700003600:alice", ErrMalformed},
		{"hex", "0x65:alice", ErrMalformed},
		{"fraction", "1700003600.5:alice", ErrMalformed},
		{"overflows int64", "99999999999999999999:alice", ErrMalformed},
		{"too long for STUN", long + "x", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckUsername(tt.username, t0)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckUsername(%q) = %v, want %v", tt.username, err, tt.want)
			}
		})
	}
}

func TestParseUsername(t *testing.T) {
	expiry, user, err := ParseUsername("1700003600:alice:2")
	if err != nil || !expiry.Equal(t0.Add(time.Hour)) || user != "alice:2" {
		t.Fatalf("ParseUsername = %v, %q, %v", expiry, user, err)
	}
}

func TestForSession(t *testing.T) {
	urls := []string{"turn:10.0.0.1:3478?transport=udp"}
	s := ForSession(urls, []byte("s3cret"), "alice", time.Hour, t0)
	urls[0] = "changed by the caller"
	want := ICEServer{
		URLs:       []string{"turn:10.0.0.1:3478?transport=udp"},
		Username:   "1700003600:alice",
		Credential: "YAFdW/YDZewZsR1QSgUk2IrfbRI=",
	}
	if s.Username != want.Username || s.Credential != want.Credential || len(s.URLs) != 1 || s.URLs[0] != want.URLs[0] {
		t.Fatalf("ForSession = %+v, want %+v", s, want)
	}
}

// naiveWellFormed is the username grammar written the slow, obvious way.
func naiveWellFormed(s string) bool {
	if len(s) > maxUsernameLen {
		return false
	}
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return false
	}
	ts := s[:i]
	if ts != "0" && strings.HasPrefix(ts, "0") {
		return false
	}
	for _, r := range ts {
		if r < '0' || r > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(ts, 10, 64)
	return err == nil
}

func FuzzCheckUsername(f *testing.F) {
	for _, s := range []string{"1700003600:alice", "1700000000:", "0:x", ":", "", "01:x", "-1:x",
		"9223372036854775807:x", "9223372036854775808:x", "1700003600:a:b", "\xff:\x00"} {
		f.Add(s, int64(1_700_000_000))
	}
	f.Fuzz(func(t *testing.T, username string, now int64) {
		err := CheckUsername(username, time.Unix(now, 0))
		malformed, expired := errors.Is(err, ErrMalformed), errors.Is(err, ErrExpired)
		if err != nil && malformed == expired {
			t.Fatalf("CheckUsername(%q) = %v: want exactly one of ErrMalformed, ErrExpired", username, err)
		}
		if malformed == naiveWellFormed(username) {
			t.Fatalf("CheckUsername(%q) = %v, but the naive grammar says well-formed=%v", username, err, !malformed)
		}
		if malformed {
			return
		}
		expiry, user, perr := ParseUsername(username)
		if perr != nil {
			t.Fatalf("ParseUsername(%q) = %v after CheckUsername accepted its form", username, perr)
		}
		if back := strconv.FormatInt(expiry.Unix(), 10) + ":" + user; back != username {
			t.Fatalf("ParseUsername(%q) does not round-trip: %q", username, back)
		}
		if expired != (now > expiry.Unix()) {
			t.Fatalf("CheckUsername(%q, %d) = %v", username, now, err)
		}
	})
}

func BenchmarkCredentials(b *testing.B) {
	secret := []byte("s3cret")
	for b.Loop() {
		Credentials(secret, "alice", time.Hour, t0)
	}
}

func BenchmarkCheckUsername(b *testing.B) {
	username, _ := Credentials([]byte("s3cret"), "alice", time.Hour, t0)
	for b.Loop() {
		if err := CheckUsername(username, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticate is the server's whole per-request credential work: parse, expiry, HMAC
// and the long-term key.
func BenchmarkAuthenticate(b *testing.B) {
	s := &Server{cfg: Config{Secret: []byte("s3cret"), Realm: DefaultRealm, Now: func() time.Time { return t0 }}}
	username, _ := Credentials(s.cfg.Secret, "alice", time.Hour, t0)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for b.Loop() {
		if _, ok := s.authenticate(username, DefaultRealm, src); !ok {
			b.Fatal("refused")
		}
	}
}
