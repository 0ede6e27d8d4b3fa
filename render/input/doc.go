// Package input is the consumer's side of a render session as the container sees it: the events a
// browser or a Go client sends on the "input" data channel, what the container does with them, and
// how it hides the round trip from the person at the other end.
//
// The parts:
//
//   - The wire format (event.go): one JSON object per data-channel message, at most [MaxSize]
//     bytes, shared with the browser page in render/web/static/app.js. [Decode] is strict (it is
//     the first thing that touches bytes from the network) and [Encode] writes the one canonical
//     form, so Encode(Decode(b)) is stable. Pings and pongs travel both ways on the same channel:
//     whoever receives a ping answers at once with [Reply], and the pinger measures the round trip
//     on its own clock from the ts it put in the ping.
//   - [State] (state.go) folds events into what the renderer reads each frame: the pointer, the
//     buttons and keys held, the wheel travel since the last frame, the gamepads.
//   - [Predictor] (predictor.go) is a constant-velocity Kalman filter over the pointer samples. The
//     container draws the cursor where the pointer will be one round trip after the last sample,
//     so the cursor the person sees moves with their hand instead of a round trip behind it.
//   - [RTT] (rtt.go) smooths the measured round trips and tracks their median: the horizon the
//     predictor is asked for.
//
// Nothing here reads a clock or does I/O: times come in as arguments.
package input
