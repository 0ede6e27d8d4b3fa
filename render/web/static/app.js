// The rendermesh player: signalling (WHEP-style, non-trickle), input capture, the frame stamp and
// the stats overlay. window.rendermesh exposes the state, the stats and connect/disconnect to
// automation (render/web/e2e/run.mjs).

import { blockSize, decodeStamp, STAMP_COLS, STAMP_ROWS } from './stamp.js';
import { contentPoint, KEY_CODE } from './input.js';
import { credentialExpired, errorMessage, iceServersFromLinks, isTurn, quantile, whepPath } from './whep.js';
import { StatsWindow, statsEveryMs } from './sample.js';

const PING_MS = 500; // input round-trip probes
const STATS_MS = 1000; // getStats and overlay refresh
const GATHER_TIMEOUT_MS = 5000; // ICE gathering: send what we have after this
const REST_MS = 30; // no pointer move for this long: the pointer rests (see tick)
const MAX_MESSAGE = 1024; // bytes, the wire format's limit
const MAX_BUFFERED = 64 * 1024; // skip moves and pad states while the channel is this backed up
const MAX_LATENCY_SAMPLES = 20000;
const MAX_RTT_SAMPLES = 256;
const MAX_PADS = 4;
const MAX_AXES = 8;
const MAX_PAD_BUTTONS = 32;
const ICE_STORE = 'rendermesh.iceServers';
const utf8 = new TextDecoder();

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('controls'),
  app: $('app'),
  rank: $('rank'),
  maxLatency: $('max-latency'),
  relay: $('relay'),
  share: $('share-stats'),
  connect: $('connect'),
  disconnect: $('disconnect'),
  statsToggle: $('stats-toggle'),
  stage: $('stage'),
  video: $('video'),
  placeholder: $('placeholder'),
  stats: $('stats'),
  status: $('status'),
  error: $('error'),
};

function freshStats() {
  return {
    framesDecoded: 0, // by the decoder (getStats)
    framesPresented: 0, // seen by requestVideoFrameCallback
    framesStamped: 0, // presented with a valid stamp
    stampErrors: 0, // presented without one (CRC mismatch)
    framesDropped: 0,
    fps: 0,
    width: 0,
    height: 0,
    bitrateKbps: 0,
    frameLatencyMsP50: null, // stamp's render time → presentation, ms
    frameLatencyMsP99: null,
    receiveLatencyMsP50: null, // stamp's render time → last packet received, ms
    inputRttMsP50: null,
    pings: 0,
    pongs: 0,
    eventsSent: 0,
    packetsLost: 0,
    relay: null, // the selected candidate pair goes through a TURN relay
    firstFrameMs: null, // connect() → first frame with a valid stamp
    reconnects: 0,
    match: null, // X-Rendermesh-Match
    statsShared: null, // samples the container's checker took (null: the session does not share)
    statsError: null, // why the last sample was not taken
  };
}

const rendermesh = {
  state: 'idle', // idle | connecting | playing | failed | closed
  error: null,
  stats: freshStats(),
  connect,
  disconnect,
};
window.rendermesh = rendermesh;

let current = null; // the Session, while there is one

function setState(state, error = null) {
  rendermesh.state = state;
  rendermesh.error = error;
  document.body.dataset.state = state;
  const text = {
    idle: 'Pick an app and connect.',
    connecting: 'Connecting…',
    playing: 'Playing',
    failed: 'Failed',
    closed: 'Disconnected',
  }[state];
  ui.status.textContent = text;
  ui.error.textContent = error ? error : '';
  ui.error.hidden = !error;
  const busy = state === 'connecting' || state === 'playing';
  ui.connect.disabled = busy;
  ui.disconnect.disabled = !busy;
  for (const el of [ui.app, ui.rank, ui.maxLatency, ui.relay, ui.share]) el.disabled = busy;
  ui.placeholder.hidden = state === 'playing';
  if (state !== 'playing') ui.placeholder.textContent = state === 'connecting' ? 'Connecting…' : text;
}

// ICE servers the node gave us (WHEP Link headers), for the next connects. TURN REST credentials
// expire; expired ones are dropped.
function knownIceServers() {
  try {
    const list = JSON.parse(sessionStorage.getItem(ICE_STORE) || '[]');
    return Array.isArray(list) ? list.filter((s) => !credentialExpired(s, Date.now())) : [];
  } catch {
    return [];
  }
}

function rememberIceServers(servers) {
  try {
    sessionStorage.setItem(ICE_STORE, JSON.stringify(servers));
  } catch {
    // storage off: they last as long as the session does
  }
}

// connect starts a session. opts: {app, rank ("index"|"fee"|"experience"), maxLatencyMs (0: no
// limit), relay (bool), shareStats (bool: consent to checks during the session), statsEvery
// (seconds between samples, default 60, at least 5), fps (the frame rate to ask for)}; missing
// fields come from the form and the page's URL. It resolves once the answer is applied; the state
// turns "playing" at the first frame.
async function connect(opts = {}) {
  const q = new URLSearchParams(location.search);
  const o = {
    app: String(opts.app ?? ui.app.value ?? ''),
    rank: String(opts.rank ?? ui.rank.value ?? 'index'),
    maxLatencyMs: Number(opts.maxLatencyMs ?? (ui.maxLatency.value || 0)),
    relay: Boolean(opts.relay ?? ui.relay.checked),
    shareStats: Boolean(opts.shareStats ?? ui.share.checked),
    statsEveryMs: statsEveryMs(opts.statsEvery ?? q.get('stats_every')),
    fps: Number(opts.fps ?? q.get('fps') ?? 0),
  };
  if (!o.app) {
    setState('failed', 'Pick an app first.');
    throw new Error('no app chosen');
  }
  showOptions(o);
  await disconnect();
  const s = new Session(o);
  current = s;
  rendermesh.stats = s.stats;
  renderStats(s.stats);
  setState('connecting');
  try {
    await s.start();
  } catch (err) {
    if (current === s && !s.closed) await s.fail(err);
    throw err;
  }
}

// disconnect ends the session, if any: DELETE on the node, then the peer connection closes.
async function disconnect() {
  const s = current;
  current = null;
  if (s) {
    await s.close();
    setState('closed');
  }
}

function showOptions(o) {
  if (![...ui.app.options].some((opt) => opt.value === o.app)) ui.app.add(new Option(o.app, o.app));
  ui.app.value = o.app;
  if ([...ui.rank.options].some((opt) => opt.value === o.rank)) ui.rank.value = o.rank;
  ui.maxLatency.value = o.maxLatencyMs > 0 ? String(o.maxLatencyMs) : '';
  ui.relay.checked = o.relay;
  ui.share.checked = o.shareStats;
}

// decodedFrames is how many frames pc's video decoder has decoded (null: not known).
async function decodedFrames(pc) {
  try {
    let n = null;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && Number.isInteger(r.framesDecoded)) n = r.framesDecoded;
    });
    return n;
  } catch {
    return null;
  }
}

// gathered resolves when ICE gathering completes (we do not trickle), or after timeoutMs.
function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// pointerPoint is where a pointer event falls on the video's picture (see contentPoint).
function pointerPoint(video, ev) {
  const fit = getComputedStyle(video).objectFit;
  return contentPoint(video.getBoundingClientRect(), video.videoWidth, video.videoHeight, fit, ev.clientX, ev.clientY);
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round = (v, digits) => Math.round(v * 10 ** digits) / 10 ** digits;
const inside = (p) => p.x >= 0 && p.x <= 1 && p.y >= 0 && p.y <= 1;

// capturing reports whether keys go to the stream: not while a form control has the focus.
function capturing() {
  const a = document.activeElement;
  return !a || a === document.body || a === ui.video || a === ui.stage;
}

class Session {
  constructor(opts) {
    this.o = opts;
    this.stats = freshStats();
    this.t0 = performance.now();
    this.closed = false;
    this.abort = new AbortController(); // fetches and event listeners
    this.pc = null;
    this.dc = null;
    this.location = null;
    this.latencies = [];
    this.receiveLatencies = [];
    this.rtts = [];
    this.keys = new Set(); // codes held
    this.buttons = new Set(); // mouse buttons held
    this.pads = new Map(); // index → last state sent (JSON)
    this.pendingMove = null;
    this.lastMove = null;
    this.lastMoveAt = 0;
    this.restSent = true;
    this.pingId = 0;
    this.prev = null; // previous getStats sample
    this.vfc = 0;
    this.raf = 0;
    this.timers = [];
    this.canvas = null;
    this.ctx = null;
    this.sampler = null; // the current window, when the session shares its statistics
    this.sharing = Promise.resolve(); // samples go one at a time
  }

  async start() {
    const servers = knownIceServers();
    const learned = await this.negotiate(servers);
    if (this.o.relay && !servers.some(isTurn) && learned.some(isTurn) && !this.closed) {
      // A relay-only session needs our address at the relay before our packets get through, and
      // we offered only host candidates (mDNS names, even). Now that the node gave us its TURN
      // server, connect again through it: the first connect cost a round trip, no more.
      this.stats.reconnects++;
      await this.hangUp();
      this.abort = new AbortController();
      await this.negotiate(learned);
    }
  }

  // negotiate makes the peer connection, offers, POSTs and applies the answer. It returns the ICE
  // servers the node sent.
  async negotiate(iceServers) {
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    // Each negotiation is a session of its own on the node, with samples of its own.
    this.sampler = this.o.shareStats ? new StatsWindow() : null;
    if (this.sampler) this.stats.statsShared = 0;
    pc.addTransceiver('video', { direction: 'recvonly' });
    this.dc = pc.createDataChannel('input', { ordered: true });
    this.wireChannel(this.dc);
    pc.ontrack = (ev) => {
      if (this.closed || ev.track.kind !== 'video') return;
      ui.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      ui.video.play().catch(() => {}); // autoplay muted; a refusal shows as no frames
      this.watchFrames();
    };
    pc.onconnectionstatechange = () => {
      if (this.closed || pc !== this.pc) return;
      switch (pc.connectionState) {
        case 'connected':
          if (rendermesh.state === 'connecting') ui.status.textContent = 'Connected, waiting for the first frame…';
          break;
        case 'disconnected':
          ui.status.textContent = 'Connection interrupted, waiting for it to come back…';
          this.sampler?.pause(); // our network, maybe: the container is not judged on it
          break;
        case 'failed':
          this.sampler = null;
          this.fail(new Error('the connection failed (ICE): no network path to the container'));
          break;
      }
    };

    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_TIMEOUT_MS);
    if (this.closed) throw new Error('disconnected');
    const resp = await fetch(whepPath(this.o), {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
      signal: this.abort.signal,
    });
    const body = await resp.text();
    if (!resp.ok) throw new Error(errorMessage(resp.status, body));
    const loc = resp.headers.get('Location');
    this.location = loc ? new URL(loc, resp.url).href : null;
    const match = resp.headers.get('X-Rendermesh-Match');
    if (match) {
      try {
        this.stats.match = JSON.parse(match);
      } catch {
        this.stats.match = { raw: match };
      }
    }
    renderStats(this.stats);
    const learned = iceServersFromLinks(resp.headers.get('Link'));
    if (learned.length) rememberIceServers(learned);
    if (this.closed) throw new Error('disconnected');
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    this.startLoops();
    return learned;
  }

  wireChannel(dc) {
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => this.ping();
    dc.onmessage = (ev) => {
      // We send text messages; a peer may send its JSON as text or as binary.
      const data = typeof ev.data === 'string' ? ev.data : ev.data instanceof ArrayBuffer ? utf8.decode(ev.data) : null;
      if (data === null || data.length > MAX_MESSAGE) return;
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      if (!m || !Number.isInteger(m.id) || typeof m.ts !== 'number') return;
      if (m.t === 'ping') {
        this.send({ t: 'pong', id: m.id, ts: m.ts }); // at once: the container times it
      } else if (m.t === 'pong') {
        const rtt = performance.now() - m.ts;
        if (rtt >= 0) {
          this.stats.pongs++;
          this.rtts.push(rtt);
          if (this.rtts.length > MAX_RTT_SAMPLES) this.rtts.shift();
          this.stats.inputRttMsP50 = round(quantile(this.rtts, 0.5), 2);
        }
      }
    };
  }

  open() {
    return !this.closed && this.dc && this.dc.readyState === 'open';
  }

  // send writes one event in render/input's wire format. Droppable events (moves, pad states) are
  // skipped while the channel is backed up; keys and buttons never are.
  send(ev, droppable = false) {
    if (!this.open()) return false;
    if (droppable && this.dc.bufferedAmount > MAX_BUFFERED) return false;
    const msg = JSON.stringify(ev);
    if (msg.length > MAX_MESSAGE) return false;
    this.dc.send(msg);
    this.stats.eventsSent++;
    return true;
  }

  ping() {
    this.pingId = (this.pingId + 1) >>> 0;
    if (this.send({ t: 'ping', id: this.pingId, ts: performance.now() })) this.stats.pings++;
  }

  startLoops() {
    if (this.timers.length) return;
    this.timers.push(setInterval(() => this.ping(), PING_MS));
    this.timers.push(setInterval(() => this.updateStats(), STATS_MS));
    if (this.sampler) this.timers.push(setInterval(() => this.shareSample(this.abort.signal), this.o.statsEveryMs));
    this.raf = requestAnimationFrame(this.tick);
    this.listen();
  }

  // tick runs each animation frame: at most one move, a rest mark, the gamepads.
  tick = (now) => {
    if (this.closed) return;
    if (this.pendingMove) {
      const p = this.pendingMove;
      this.pendingMove = null;
      if (this.send({ t: 'move', x: p.x, y: p.y, ts: performance.now() }, true)) this.lastMove = p;
    } else if (!this.restSent && this.lastMove && now - this.lastMoveAt >= REST_MS) {
      // The pointer rests, and a browser sends nothing then. Saying so once, with the last
      // position and the current time, lets the container's predictor stop the cursor where the
      // pointer stopped instead of coasting past it (render/input.Predictor).
      this.restSent = true;
      this.send({ t: 'move', x: this.lastMove.x, y: this.lastMove.y, ts: performance.now() }, true);
    }
    this.pollPads();
    this.raf = requestAnimationFrame(this.tick);
  };

  flushMove() {
    if (!this.pendingMove) return;
    const p = this.pendingMove;
    this.pendingMove = null;
    if (this.send({ t: 'move', x: p.x, y: p.y, ts: performance.now() })) this.lastMove = p;
  }

  pollPads() {
    if (!navigator.getGamepads) return;
    for (const gp of navigator.getGamepads()) {
      if (!gp || gp.index >= MAX_PADS) continue;
      const axes = gp.axes.slice(0, MAX_AXES).map((v) => round(clamp(v, -1, 1), 4));
      const btn = gp.buttons.slice(0, MAX_PAD_BUTTONS).map((b) => round(clamp(b.value, 0, 1), 4));
      const key = JSON.stringify([axes, btn]);
      if (this.pads.get(gp.index) === key) continue;
      if (this.send({ t: 'pad', i: gp.index, axes, btn, ts: performance.now() }, true)) this.pads.set(gp.index, key);
    }
  }

  listen() {
    const opt = { signal: this.abort.signal };
    const v = ui.video;
    v.addEventListener(
      'pointermove',
      (ev) => {
        const p = pointerPoint(v, ev);
        if (!p) return;
        if (!inside(p)) {
          if (this.buttons.size === 0) return; // outside the picture and not dragging
          p.x = clamp(p.x, 0, 1);
          p.y = clamp(p.y, 0, 1);
        }
        this.pendingMove = p;
        this.lastMoveAt = performance.now();
        this.restSent = false;
      },
      opt,
    );
    v.addEventListener(
      'pointerdown',
      (ev) => {
        const p = pointerPoint(v, ev);
        if (!p || !inside(p) || ev.button < 0 || ev.button > 4) return;
        ev.preventDefault();
        v.focus({ preventScroll: true });
        v.setPointerCapture?.(ev.pointerId);
        this.pendingMove = p;
        this.flushMove();
        this.buttons.add(ev.button);
        this.send({ t: 'down', b: ev.button, ts: performance.now() });
      },
      opt,
    );
    const up = (ev) => {
      if (!this.buttons.has(ev.button)) return;
      this.flushMove();
      this.buttons.delete(ev.button);
      this.send({ t: 'up', b: ev.button, ts: performance.now() });
    };
    v.addEventListener('pointerup', up, opt);
    v.addEventListener('pointercancel', () => this.releaseAll(), opt);
    v.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault();
        const unit = ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? v.clientHeight || 800 : 1;
        this.send({ t: 'wheel', dx: round(ev.deltaX * unit, 2), dy: round(ev.deltaY * unit, 2), ts: performance.now() });
      },
      { signal: this.abort.signal, passive: false },
    );
    v.addEventListener('contextmenu', (ev) => ev.preventDefault(), opt);
    // A hidden page presents no frames: its window would read as a stream gone silent.
    document.addEventListener('visibilitychange', () => document.hidden && this.sampler?.pause(), opt);

    const key = (ev, down) => {
      if (ev.code === 'F2' || !capturing() || !KEY_CODE.test(ev.code)) return;
      if (ev.code !== 'Tab' && !ev.ctrlKey && !ev.metaKey) ev.preventDefault();
      if (down && (ev.repeat || this.keys.has(ev.code))) return;
      if (!down && !this.keys.has(ev.code)) return;
      if (down) this.keys.add(ev.code);
      else this.keys.delete(ev.code);
      this.send({ t: 'key', k: ev.code, d: down, ts: performance.now() });
    };
    document.addEventListener('keydown', (ev) => key(ev, true), opt);
    document.addEventListener('keyup', (ev) => key(ev, false), opt);
    // Nothing stays held when the keys stop coming to us.
    window.addEventListener('blur', () => this.releaseAll(), opt);
    document.addEventListener('focusin', () => capturing() || this.releaseKeys(), opt);
    const padGone = (ev) => {
      // A pad that goes away lets go of everything: an empty state.
      if (ev.gamepad.index < MAX_PADS && this.pads.delete(ev.gamepad.index)) {
        this.send({ t: 'pad', i: ev.gamepad.index, axes: [], btn: [], ts: performance.now() });
      }
    };
    window.addEventListener('gamepaddisconnected', padGone, opt);
  }

  releaseKeys() {
    for (const k of this.keys) this.send({ t: 'key', k, d: false, ts: performance.now() });
    this.keys.clear();
  }

  releaseAll() {
    this.releaseKeys();
    for (const b of this.buttons) this.send({ t: 'up', b, ts: performance.now() });
    this.buttons.clear();
  }

  watchFrames() {
    if (this.vfc || !('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return;
    this.vfc = ui.video.requestVideoFrameCallback(this.onFrame);
  }

  onFrame = (now, meta) => {
    if (this.closed) return;
    this.stats.framesPresented++;
    if (rendermesh.state === 'connecting' && current === this) setState('playing');
    const st = this.readStamp(meta);
    if (this.sampler && !document.hidden) {
      this.sampler.frame(meta.presentationTime ?? now, st ? st.frame : 0, st ? st.latencyMs : null,
        meta.width || ui.video.videoWidth, meta.height || ui.video.videoHeight);
    }
    this.vfc = ui.video.requestVideoFrameCallback(this.onFrame);
  };

  // readStamp decodes the presented frame's stamp and records its latency. It returns {frame,
  // latencyMs}, or null when the frame has no valid stamp.
  readStamp(meta) {
    const vw = meta.width || ui.video.videoWidth;
    const vh = meta.height || ui.video.videoHeight;
    const b = blockSize(vw);
    const w = STAMP_COLS * b;
    const h = STAMP_ROWS * b;
    if (vw < w || vh < h) return null;
    if (!this.canvas || this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas = new OffscreenCanvas(w, h);
      this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });
    }
    // The source rectangle is in the video's intrinsic pixels, whatever size it is shown at.
    this.ctx.drawImage(ui.video, 0, 0, w, h, 0, 0, w, h);
    const st = decodeStamp(this.ctx.getImageData(0, 0, w, h).data, w, b);
    if (!st.ok) {
      this.stats.stampErrors++;
      return null;
    }
    this.stats.framesStamped++;
    if (this.stats.firstFrameMs === null) this.stats.firstFrameMs = round(performance.now() - this.t0, 1);
    // Render time is the container's wall clock, presentation time ours (performance.timeOrigin +
    // a monotonic offset is unix time in ms). In the tests both ends run on one machine, so the
    // difference is the true render-to-display latency; across machines it also carries the
    // offset between their clocks.
    const renderMs = Number(st.renderUs) / 1000;
    const latencyMs = performance.timeOrigin + meta.presentationTime - renderMs;
    this.latencies.push(latencyMs);
    if (this.latencies.length > MAX_LATENCY_SAMPLES) this.latencies.splice(0, this.latencies.length - MAX_LATENCY_SAMPLES);
    if (meta.receiveTime !== undefined) {
      this.receiveLatencies.push(performance.timeOrigin + meta.receiveTime - renderMs);
      if (this.receiveLatencies.length > MAX_LATENCY_SAMPLES) this.receiveLatencies.shift();
    }
    return { frame: st.frame, latencyMs };
  }

  // shareSample ends the sampler's window and sends it to the node, which signs it and passes it
  // to the container's checker. Samples go one at a time, in order.
  shareSample(signal) {
    const sampler = this.sampler;
    const loc = this.location;
    const pc = this.pc;
    if (!sampler || !loc || !pc) return Promise.resolve();
    this.sharing = this.sharing.then(async () => {
      const sample = sampler.flush(performance.now(), await decodedFrames(pc));
      if (!sample) return;
      try {
        const resp = await fetch(`${loc}/stats`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(sample),
          signal,
        });
        const body = await resp.text();
        let ack = {};
        try {
          ack = JSON.parse(body);
        } catch {
          // not JSON: the status says it
        }
        if (Number.isInteger(ack.shared)) this.stats.statsShared = ack.shared;
        this.stats.statsError = resp.ok ? null : errorMessage(resp.status, body);
      } catch (err) {
        if (!signal.aborted) this.stats.statsError = String(err && err.message ? err.message : err);
      }
      renderStats(this.stats);
    });
    return this.sharing;
  }

  async updateStats() {
    const pc = this.pc;
    if (this.closed || !pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (this.closed || pc !== this.pc) return;
    const s = this.stats;
    let inbound = null;
    let pair = null;
    let transport = null;
    report.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = r;
      else if (r.type === 'transport') transport = r;
    });
    if (transport && transport.selectedCandidatePairId) pair = report.get(transport.selectedCandidatePairId);
    if (!pair) report.forEach((r) => r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && (pair = r));
    if (pair) {
      const local = report.get(pair.localCandidateId);
      const remote = report.get(pair.remoteCandidateId);
      s.relay = (local && local.candidateType === 'relay') || (remote && remote.candidateType === 'relay') || false;
    }
    if (inbound) {
      if (this.prev) {
        const dt = inbound.timestamp - this.prev.timestamp; // ms
        if (dt > 0) {
          s.bitrateKbps = round(((inbound.bytesReceived - this.prev.bytesReceived) * 8) / dt, 1);
          s.fps = round(((inbound.framesDecoded - this.prev.framesDecoded) * 1000) / dt, 1);
        }
      }
      this.prev = inbound;
      s.framesDecoded = inbound.framesDecoded || 0;
      s.framesDropped = inbound.framesDropped || 0;
      s.packetsLost = inbound.packetsLost || 0;
    }
    s.width = ui.video.videoWidth;
    s.height = ui.video.videoHeight;
    const p = (xs, q) => (xs.length ? round(quantile(xs, q), 1) : null);
    s.frameLatencyMsP50 = p(this.latencies, 0.5);
    s.frameLatencyMsP99 = p(this.latencies, 0.99);
    s.receiveLatencyMsP50 = p(this.receiveLatencies, 0.5);
    renderStats(s);
  }

  // hangUp ends this peer connection and its session on the node, keeping the stats. A session
  // that shares its statistics sends its last window first.
  async hangUp() {
    if (this.sampler) await this.shareSample(AbortSignal.timeout(5000));
    this.sampler = null;
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    cancelAnimationFrame(this.raf);
    if (this.vfc) ui.video.cancelVideoFrameCallback(this.vfc);
    this.vfc = 0;
    if (this.open()) this.releaseAll();
    const pc = this.pc;
    const loc = this.location;
    this.pc = null;
    this.dc = null;
    this.location = null;
    // The session's resource goes first: closing the connection first could end the session on
    // the node by itself, and the DELETE would then meet a 404.
    if (loc) {
      try {
        await fetch(loc, { method: 'DELETE', keepalive: true, signal: AbortSignal.timeout(3000) });
      } catch {
        // the node is gone or unreachable: the session times out there
      }
    }
    if (pc) pc.close();
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    await this.hangUp();
    ui.video.srcObject = null;
  }

  async fail(err) {
    if (this.closed) return;
    const msg = err && err.message ? err.message : String(err);
    await this.close();
    if (current === this) {
      current = null;
      setState('failed', msg);
    }
  }

  // deleteNow is for pagehide: no awaiting, keepalive carries the request.
  deleteNow() {
    if (this.location) fetch(this.location, { method: 'DELETE', keepalive: true }).catch(() => {});
  }
}

// The overlay: each stat's label and how to show it (null: not known yet, shown as a dash).
const fixed = (v, digits, unit = '') => (v === null || v === undefined ? null : `${Number(v).toFixed(digits)}${unit}`);
const SHOWN = [
  ['fps', 'FPS', (s) => (s.framesPresented ? fixed(s.fps, 1) : null)],
  ['resolution', 'Resolution', (s) => (s.width ? `${s.width}×${s.height}` : null)],
  ['bitrate', 'Bitrate', (s) => (!s.framesPresented ? null : s.bitrateKbps >= 1000 ? fixed(s.bitrateKbps / 1000, 2, ' Mbit/s') : fixed(s.bitrateKbps, 0, ' kbit/s'))],
  ['frameLatencyMsP50', 'Frame latency p50', (s) => fixed(s.frameLatencyMsP50, 1, ' ms')],
  ['frameLatencyMsP99', 'Frame latency p99', (s) => fixed(s.frameLatencyMsP99, 1, ' ms')],
  ['inputRttMsP50', 'Input RTT p50', (s) => fixed(s.inputRttMsP50, 1, ' ms')],
  ['packetsLost', 'Packets lost', (s) => String(s.packetsLost)],
  ['relay', 'Relay', (s) => (s.relay === null ? null : s.relay ? 'yes (TURN)' : 'no (direct)')],
  ['frames', 'Frames stamped', (s) => `${s.framesStamped} / ${s.framesPresented}`],
  ['firstFrameMs', 'First frame', (s) => fixed(s.firstFrameMs, 0, ' ms')],
  ['container', 'Container', (s) => s.match?.container ?? null],
  ['indexer', 'Indexer', (s) => s.match?.indexer ?? null],
  ['price', 'Price', (s) => s.match?.price ?? null],
  ['matchMs', 'Match', (s) => fixed(s.match?.match_ms, 1, ' ms')],
  ['session', 'Session', (s) => s.match?.session_id ?? null],
  ['checks', 'Stats shared', (s) => (s.statsShared === null ? 'no' : `${s.statsShared} sample${s.statsShared === 1 ? '' : 's'}${s.statsError ? ` (last refused: ${s.statsError})` : ''}`)],
];

const statCells = new Map();

function buildStats() {
  const dl = document.createElement('dl');
  for (const [key, label] of SHOWN) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.dataset.stat = key;
    dl.append(dt, dd);
    statCells.set(key, dd);
  }
  ui.stats.replaceChildren(dl);
}

function renderStats(s) {
  for (const [key, , show] of SHOWN) {
    const text = show(s);
    const cell = statCells.get(key);
    cell.textContent = text === null ? '—' : String(text);
    cell.title = text === null ? '' : String(text);
  }
}

function toggleStats() {
  const shown = ui.stats.hidden;
  ui.stats.hidden = !shown;
  ui.statsToggle.setAttribute('aria-pressed', String(shown));
}

async function loadApps() {
  try {
    const resp = await fetch('/v1/render/apps', { headers: { Accept: 'application/json' } });
    const body = await resp.text();
    if (!resp.ok) throw new Error(errorMessage(resp.status, body));
    const apps = JSON.parse(body).apps;
    if (!Array.isArray(apps)) throw new Error('the node sent no app list');
    const chosen = ui.app.value;
    ui.app.replaceChildren(...apps.filter((a) => typeof a === 'string').map((a) => new Option(a, a)));
    if (chosen && apps.includes(chosen)) ui.app.value = chosen;
    if (apps.length === 0) ui.placeholder.textContent = 'This node offers no apps yet.';
  } catch (err) {
    if (rendermesh.state === 'idle') {
      ui.error.hidden = false;
      ui.error.textContent = `Could not list the apps: ${err.message}`;
    }
  }
}

function init() {
  buildStats();
  renderStats(rendermesh.stats);
  setState('idle');
  const q = new URLSearchParams(location.search);
  if (q.has('app')) ui.app.add(new Option(q.get('app'), q.get('app'), true, true));
  if (q.has('rank')) ui.rank.value = q.get('rank');
  if (q.has('max_latency_ms')) ui.maxLatency.value = q.get('max_latency_ms');
  ui.relay.checked = q.get('relay') === '1';
  ui.share.checked = q.get('share_stats') === '1';
  if (q.get('stats') === '0') toggleStats();

  ui.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    connect()
      .then(() => ui.video.focus({ preventScroll: true }))
      .catch(() => {}); // shown by setState
  });
  ui.disconnect.addEventListener('click', () => disconnect());
  ui.statsToggle.addEventListener('click', toggleStats);
  document.addEventListener('keydown', (ev) => {
    if (ev.code === 'F2' && !ev.repeat) {
      ev.preventDefault();
      toggleStats();
    }
  });
  window.addEventListener('pagehide', () => current && current.deleteNow());
  const apps = loadApps();
  if (q.get('connect') === '1') apps.then(() => connect().catch(() => {}));
}

init();
