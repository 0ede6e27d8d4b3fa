// Package turn is rendermesh's TURN relay: the fallback path for render sessions whose peers
// cannot reach each other directly.
//
// Relay-capable nodes run the embedded server (Listen, a thin shell around pion/turn); operators
// may run coturn instead. Either way clients authenticate with TURN REST credentials, the scheme
// of coturn's use-auth-secret / static-auth-secret:
//
//	username = "<unix expiry seconds>:<user id>"
//	password = base64(HMAC-SHA1(secret, username))
//
// so whoever knows the shared secret mints credentials without talking to the relay
// (Credentials, or ForSession for a ready ICE server entry), and the relay checks them without
// state (CheckUsername and the HMAC). The parts:
//
//   - credentials.go: minting and parsing the credentials, the ICEServer entry.
//   - config.go: Config, its defaults and validation.
//   - server.go: Listen, Server (addresses, ICE URLs, Stats, Close).
//   - relay.go: the relay sockets: port range, allocation cap, byte counters.
//   - log.go: pion's logging into slog.
//
// A WebRTC peer uses an ICEServer as webrtc.ICEServer{URLs: s.URLs, Username: s.Username,
// Credential: s.Credential}. With pion, set SettingEngine.SetRelayAcceptanceMinWait(0), or a
// relay-only connection waits 2 s before it is accepted.
package turn
