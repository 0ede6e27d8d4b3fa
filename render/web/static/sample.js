// Checks during sessions, the page's side (docs/CHECKERS.md, "Checks during sessions"): with the
// consumer's consent the page measures its stream in windows and POSTs each to the node
// (/v1/render/whep/{id}/stats), which signs it as the session's consumer and sends it to the
// container's assigned checker. Pure: no DOM, so node can test it (render/web/web_test.go).

import { quantile } from './whep.js';

// MIN_WINDOW_MS is the shortest window the node takes (p2p.MinSessionStatsWindowMs); the checker
// judges windows of 3 s or more.
export const MIN_WINDOW_MS = 1000;
// STATS_EVERY_MS is how often a session sends a sample unless the page asks otherwise
// (stats_every in seconds); MIN_STATS_EVERY_MS the shortest interval (node.MinStatsEvery).
export const STATS_EVERY_MS = 60000;
export const MIN_STATS_EVERY_MS = 5000;
const MAX_LATENCIES = 20000;

// StatsWindow measures one window of the stream at a time. Times are in ms on one clock (the
// page's performance.now()); decoded counts come from the decoder (getStats framesDecoded).
export class StatsWindow {
  constructor() {
    this.reset(null, 0);
  }

  // reset starts a window at t (null: at the next frame), the decoder having decoded `decoded`
  // frames so far (null: not known, the window then counts the frames presented).
  reset(t, decoded) {
    this.start = t;
    this.last = t;
    this.decodedAtStart = decoded;
    this.presented = 0;
    this.lastNum = 0;
    this.skipped = 0;
    this.gap = 0;
    this.latencies = [];
    this.sizes = new Map();
  }

  // frame records one presented frame at t: its stamp's frame number (0: no valid stamp), its
  // render-to-presented latency in ms (null: none) and its size.
  frame(t, num, latencyMs, width, height) {
    if (this.start === null) {
      this.start = t;
      this.last = t;
    }
    this.gap = Math.max(this.gap, t - this.last);
    this.last = t;
    this.presented++;
    if (num > 0) {
      if (this.lastNum > 0 && num > this.lastNum + 1) this.skipped += num - this.lastNum - 1;
      this.lastNum = num; // a new stream numbers from 1 again: nothing counted lost
    }
    if (latencyMs !== null && Number.isFinite(latencyMs) && this.latencies.length < MAX_LATENCIES) {
      this.latencies.push(Math.max(0, latencyMs));
    }
    if (width > 0 && height > 0) {
      const k = `${width}x${height}`;
      this.sizes.set(k, (this.sizes.get(k) || 0) + 1);
    }
  }

  // pause drops the window: a hidden page presents no frames, which must not read as the stream
  // going silent. The next window starts at the next frame.
  pause() {
    this.reset(null, null);
  }

  // flush ends the window at t and returns its sample for the node, or null when no frame came yet
  // or the window is too short; the next window starts at t.
  flush(t, decoded) {
    if (this.start === null || t - this.start < MIN_WINDOW_MS) return null;
    const windowMs = Math.round(t - this.start);
    const known = this.decodedAtStart !== null && Number.isInteger(decoded) && decoded >= this.decodedAtStart;
    const frames = known ? decoded - this.decodedAtStart : this.presented;
    // Frames decoded but never presented (a display slower than the stream) skip numbers too,
    // without being lost on the way.
    const lost = Math.max(0, this.skipped - Math.max(0, frames - this.presented));
    let width = 0;
    let height = 0;
    let best = 0;
    for (const [k, n] of this.sizes) {
      const [w, h] = k.split('x').map(Number);
      if (n > best || (n === best && w * h > width * height)) [best, width, height] = [n, w, h];
    }
    const q = (p) => (this.latencies.length ? Math.round(quantile(this.latencies, p) * 1000) / 1000 : 0);
    const out = {
      window_ms: windowMs,
      frames,
      frames_lost: lost,
      width,
      height,
      latency_ms_p50: q(0.5),
      latency_ms_p99: q(0.99),
      longest_gap_ms: Math.round(Math.min(windowMs, Math.max(this.gap, t - this.last))),
    };
    this.reset(t, known ? decoded : null);
    return out;
  }
}

// statsEveryMs is the sampling interval for a page asking for `seconds` (empty or 0: the default).
export function statsEveryMs(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s <= 0) return STATS_EVERY_MS;
  return Math.max(MIN_STATS_EVERY_MS, Math.round(s * 1000));
}
