// End-to-end driver for the rendermesh player page, in Debian's Chromium (no downloaded browser).
//
//   node run.mjs <base-url> [--app demo] [--seconds 10] [--relay] [--share-stats] [--timeout 30]
//
// It opens <base-url>/, connects with window.rendermesh.connect({app, relay, shareStats}), waits until the
// page plays frames with valid stamps, moves the mouse over the video and presses a few keys,
// watches for --seconds, disconnects (a session that shares its statistics sends its last sample
// then), then prints one line of JSON: the page's stats and ok: true, and exits 0. On any failure it prints {ok: false, error, state, consoleErrors, ...} and exits 1. A console
// error on the page is a failure too. CHROMIUM overrides the browser's path.

import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--no-sandbox', // runs as root in containers
  '--autoplay-policy=no-user-gesture-required',
  '--disable-gpu',
  '--use-angle=swiftshader', // software GL: canvas readback works with no GPU
  '--disable-dev-shm-usage', // small /dev/shm in containers
  '--mute-audio',
];

function parseArgs(argv) {
  const o = { base: null, app: 'demo', seconds: 10, relay: false, shareStats: false, timeout: 30 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--app') o.app = value();
    else if (a === '--seconds') o.seconds = Number(value());
    else if (a === '--timeout') o.timeout = Number(value());
    else if (a === '--relay') o.relay = true;
    else if (a === '--share-stats') o.shareStats = true;
    else if (a.startsWith('--')) throw new Error(`unknown flag ${a}`);
    else if (o.base === null) o.base = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!o.base) throw new Error('usage: node run.mjs <base-url> [--app demo] [--seconds 10] [--relay] [--share-stats] [--timeout 30]');
  if (!(o.seconds >= 0) || !(o.timeout > 0)) throw new Error('--seconds and --timeout take positive numbers');
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const consoleErrors = [];
  let browser = null;
  let page = null;
  const snapshot = async () => {
    try {
      return await page.evaluate(() => ({ state: window.rendermesh?.state, error: window.rendermesh?.error, stats: window.rendermesh?.stats }));
    } catch {
      return {};
    }
  };
  const fail = async (error) => {
    const snap = page ? await snapshot() : {};
    console.log(JSON.stringify({ ok: false, error, state: snap.state ?? null, pageError: snap.error ?? null, consoleErrors, stats: snap.stats ?? null }));
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  };
  // Nothing below may hang: a hard deadline covers the whole run.
  const deadline = setTimeout(() => fail('the run took too long'), (o.timeout * 2 + o.seconds + 30) * 1000);

  try {
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
  } catch (err) {
    return fail(`could not start Chromium: ${err.message.split('\n')[0]}`);
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));

  const url = new URL('/', o.base).href;
  try {
    await page.goto(url, { waitUntil: 'load', timeout: o.timeout * 1000 });
    await page.waitForFunction(() => window.rendermesh && window.rendermesh.state === 'idle', null, { timeout: o.timeout * 1000 });
  } catch (err) {
    return fail(`the page at ${url} did not load: ${err.message.split('\n')[0]}`);
  }

  const connectError = await page.evaluate(
    ({ app, relay, shareStats }) => window.rendermesh.connect({ app, relay, shareStats }).then(() => null, (e) => String(e && e.message ? e.message : e)),
    { app: o.app, relay: o.relay, shareStats: o.shareStats },
  );
  if (connectError) return fail(`connect failed: ${connectError}`);

  try {
    await page.waitForFunction(
      () => {
        const r = window.rendermesh;
        if (r.state === 'failed') return true;
        return r.state === 'playing' && r.stats.framesStamped >= 5;
      },
      null,
      { timeout: o.timeout * 1000, polling: 100 },
    );
  } catch {
    const snap = await snapshot();
    return fail(`no stamped frames within ${o.timeout} s (state ${snap.state}, ${snap.stats?.framesPresented ?? 0} frames presented, ${snap.stats?.stampErrors ?? 0} without a valid stamp)`);
  }
  const now = await snapshot();
  if (now.state === 'failed') return fail(`the session failed: ${now.error}`);

  // Input: click the picture at (0.25, 0.75) of its content (the page letterboxes it with
  // object-fit: contain, so the box is worked out here on its own), sweep the pointer round a
  // circle, press a few keys, turn the wheel.
  const pic = await page.evaluate(() => {
    const v = document.getElementById('video');
    const r = v.getBoundingClientRect();
    const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
    const w = v.videoWidth * s;
    const h = v.videoHeight * s;
    return { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, w, h };
  });
  if (!(pic.w > 0 && pic.h > 0)) return fail('the video has no size on the page');
  const at = (x, y) => [pic.left + x * pic.w, pic.top + y * pic.h];
  await page.mouse.click(...at(0.25, 0.75));
  for (let i = 0; i <= 60; i++) {
    const a = (i / 60) * 2 * Math.PI;
    await page.mouse.move(...at(0.5 + 0.3 * Math.cos(a), 0.5 + 0.3 * Math.sin(a)));
    await sleep(16);
  }
  for (const key of ['KeyW', 'KeyA', 'Space', 'ArrowLeft']) {
    await page.keyboard.down(key);
    await sleep(30);
    await page.keyboard.up(key);
  }
  await page.mouse.wheel(0, 120);

  await sleep(o.seconds * 1000);
  const end = await snapshot();
  if (end.state !== 'playing') return fail(`the session stopped playing: state ${end.state}${end.error ? `, ${end.error}` : ''}`);
  if (consoleErrors.length) return fail('the page logged errors');

  await page.evaluate(() => window.rendermesh.disconnect());
  const after = await snapshot();
  if (after.state !== 'closed') return fail(`after disconnect the state is ${after.state}`);
  if (consoleErrors.length) return fail('the page logged errors');

  clearTimeout(deadline);
  // The last sample goes at disconnect: the counts of samples shared come from after it.
  const shared = { statsShared: after.stats?.statsShared ?? null, statsError: after.stats?.statsError ?? null };
  console.log(JSON.stringify({ ok: true, ...end.stats, ...shared, app: o.app, relayAsked: o.relay, seconds: o.seconds, consoleErrors }));
  await browser.close();
  process.exit(0);
}

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: String(err && err.message ? err.message : err) }));
  process.exit(1);
});
