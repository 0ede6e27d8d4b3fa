// Package checker holds the checking methods of the checker role as pure logic: what a checker
// concludes from what it observed. It opens no connection and reads no clock; the node's checker
// loop runs the sessions and feeds the observations in.
//
// # Simulation testing
//
// A checker acts as a consumer: it asks a container for a render session with a fresh random
// nonce (NewChallenge; RenderOffer.challenge on the wire) and the container must stream the
// built-in scene seeded by that nonce (render/scene). A Verifier receives every decoded frame
// with its stamp and arrival time (Observe), re-renders a random sample of them from the nonce
// and compares their luma with what arrived (PSNR), follows the stamps' frame numbers and times,
// and at the end (Finish) measures the frame rate, size and bitrate against what was asked. The
// Result says pass or fail, which check failed and why, the measurements, and an evidence hash
// over them and the sampled frames that an attestation can carry.
//
// Only a container that renders the scene for this nonce, now, produces frames that match: a
// recording of an earlier session has another nonce's content and stamps from before the
// challenge; restamping old content with fresh stamps puts frame n's stamp on another frame's
// content; pre-rendering cannot start before the nonce exists.
//
// # Performance readings
//
// CheckTelemetry judges a window of GPU readings (NVML, as roles/container's probe reads them)
// against the GPUs a container advertises in its record: the same GPUs, physically plausible
// values, consistent with the container's state, and not a constant or copied reading.
package checker
