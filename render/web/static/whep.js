// Signalling helpers: pure functions, no DOM, so node can test them (render/web/web_test.go).

// whepPath is the URL of the session request for opts {app, rank, maxLatencyMs, relay,
// shareStats, fps}. max_latency_ms=0 means no limit; share_stats=1 is the consumer's consent to
// checks during the session (the node then asks the container for fps, 30 unless given).
export function whepPath(opts) {
  const q = new URLSearchParams({
    app: opts.app,
    rank: opts.rank || 'index',
    max_latency_ms: String(Math.max(0, Math.round(Number(opts.maxLatencyMs) || 0))),
    relay: opts.relay ? '1' : '0',
  });
  if (opts.shareStats) q.set('share_stats', '1');
  const fps = Math.round(Number(opts.fps) || 0);
  if (fps >= 1 && fps <= 120) q.set('fps', String(fps));
  return `/v1/render/whep?${q}`;
}

// parseLinks splits an HTTP Link header (several headers arrive joined by ", ") into
// [{url, params}], parameter names lower-cased, quoted values unquoted.
export function parseLinks(header) {
  const out = [];
  const s = header || '';
  let i = 0;
  const param = /^\s*;\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]*)))?/;
  while (i < s.length) {
    const lt = s.indexOf('<', i);
    if (lt < 0) break;
    const gt = s.indexOf('>', lt);
    if (gt < 0) break;
    const link = { url: s.slice(lt + 1, gt).trim(), params: {} };
    i = gt + 1;
    for (let m; (m = param.exec(s.slice(i))); i += m[0].length) {
      link.params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3] ?? '';
    }
    out.push(link);
    const comma = s.indexOf(',', i);
    if (comma < 0) break;
    i = comma + 1;
  }
  return out;
}

// iceServersFromLinks picks the ICE servers out of a WHEP answer's Link header (RFC 9725
// section 4.6: rel="ice-server", username, credential), as RTCIceServer objects.
export function iceServersFromLinks(header) {
  return parseLinks(header)
    .filter((l) => (l.params.rel || '').split(/\s+/).includes('ice-server') && /^(stun|stuns|turn|turns):/i.test(l.url))
    .map((l) => {
      const s = { urls: l.url };
      if (l.params.username !== undefined) s.username = l.params.username;
      if (l.params.credential !== undefined) s.credential = l.params.credential;
      return s;
    });
}

// isTurn reports whether an RTCIceServer is a relay.
export function isTurn(server) {
  return [].concat(server.urls).some((u) => /^turns?:/i.test(u));
}

// credentialExpired reports whether a TURN REST credential (username "<unix expiry>:<user>") runs
// out within marginS seconds of nowMs; credentials of any other form never expire here.
export function credentialExpired(server, nowMs, marginS = 60) {
  const m = /^(\d+):/.exec(server.username || '');
  return m !== null && Number(m[1]) - marginS < nowMs / 1000;
}

// errorMessage turns a failed response into a sentence: its JSON {"error","reason"} when it has
// one, else its status and text.
export function errorMessage(status, body) {
  try {
    const j = JSON.parse(body);
    if (j && typeof j.error === 'string') return j.reason ? `${j.error} (${j.reason})` : j.error;
  } catch {
    // not JSON
  }
  const text = String(body || '').trim().slice(0, 200);
  return text ? `HTTP ${status}: ${text}` : `HTTP ${status}`;
}

// quantile is the q-quantile (0..1) of numbers by nearest rank; null when there are none.
export function quantile(values, q) {
  if (values.length === 0) return null;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
