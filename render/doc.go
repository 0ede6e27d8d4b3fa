// Package render will hold the render path: WebRTC sessions (pion) signalled over libp2p, the
// encoders, input, the TURN relay fallback, the built-in renderer and the web client. It is empty in
// this release; the render-path issue builds it.
package render
