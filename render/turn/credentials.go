package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme (and coturn) fix HMAC-SHA1
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrMalformed is returned for a username that is not "<unix expiry seconds>:<user id>".
	ErrMalformed = errors.New("turn: malformed username, want \"<unix expiry seconds>:<user id>\"")
	// ErrExpired is returned for a username whose expiry has passed: mint fresh credentials.
	ErrExpired = errors.New("turn: credentials expired, mint fresh ones")
)

// maxUsernameLen is the longest USERNAME a STUN message may carry (RFC 8489 section 14.3).
const maxUsernameLen = 513

// Credentials mints TURN REST credentials valid until now+ttl, in the form coturn's
// use-auth-secret / static-auth-secret checks: username "<unix expiry seconds>:<user>",
// password base64(HMAC-SHA1(secret, username)).
//
// A TURN server checks the credentials on every authenticated request, allocation refreshes
// included, so ttl must cover the whole session that uses them, not only its start.
func Credentials(secret []byte, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	return username, restPassword(secret, username)
}

// restPassword is base64(HMAC-SHA1(secret, username)), the TURN REST password.
func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a TURN REST username into its expiry and user id. The expiry is canonical
// decimal Unix seconds (digits only, no sign, no leading zero); the user id is everything after
// the first colon and may be empty. Errors wrap ErrMalformed.
func ParseUsername(username string) (expiry time.Time, user string, err error) {
	if len(username) > maxUsernameLen {
		return time.Time{}, "", fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(username), maxUsernameLen)
	}
	ts, user, ok := strings.Cut(username, ":")
	if !ok {
		return time.Time{}, "", fmt.Errorf("%w: no colon", ErrMalformed)
	}
	if ts == "" || (len(ts) > 1 && ts[0] == '0') {
		return time.Time{}, "", fmt.Errorf("%w: expiry %q is not canonical decimal seconds", ErrMalformed, ts)
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, "", fmt.Errorf("%w: expiry %q is not decimal seconds", ErrMalformed, ts)
		}
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: expiry %q out of range", ErrMalformed, ts)
	}
	return time.Unix(secs, 0), user, nil
}

// CheckUsername parses a TURN REST username and checks that it has not expired at now. A
// username stays valid through its expiry second, as with coturn. Errors wrap ErrMalformed or
// ErrExpired.
func CheckUsername(username string, now time.Time) error {
	expiry, _, err := ParseUsername(username)
	if err != nil {
		return err
	}
	if now.Unix() > expiry.Unix() {
		return fmt.Errorf("%w: expired at %s", ErrExpired, expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

// ICEServer is one entry of a WebRTC configuration's ICE servers, shaped like
// webrtc.ICEServer (and the browser's RTCIceServer) so that it converts field by field and
// marshals to the same JSON.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ForSession mints credentials for one render session's user and returns them with the relay's
// URLs (see Server.URLs) as an ICE server entry.
func ForSession(urls []string, secret []byte, user string, ttl time.Duration, now time.Time) ICEServer {
	username, pass := Credentials(secret, user, ttl, now)
	return ICEServer{URLs: append([]string(nil), urls...), Username: username, Credential: pass}
}
