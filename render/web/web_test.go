package web

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestHandlerServesThePage(t *testing.T) {
	h := Handler()
	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<video id="video" autoplay muted playsinline`},
		{"/app.js", "text/javascript; charset=utf-8", "window.rendermesh = rendermesh"},
		{"/stamp.js", "text/javascript; charset=utf-8", "export function decodeStamp"},
		{"/whep.js", "text/javascript; charset=utf-8", "export function whepPath"},
		{"/input.js", "text/javascript; charset=utf-8", "export function contentPoint"},
		{"/style.css", "text/css; charset=utf-8", "object-fit: contain"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, c.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type %q, want %q", got, c.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", got)
			}
			if !strings.Contains(string(body), c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again := get(t, h, http.MethodGet, c.path, map[string]string{"If-None-Match": etag})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation: status %d, want 304", again.StatusCode)
			}
		})
	}
	if csp := get(t, h, http.MethodGet, "/", nil).Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("the page has no same-origin CSP: %q", csp)
	}
	if resp := get(t, h, http.MethodGet, "/nope.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: status %d", resp.StatusCode)
	}
	if resp := get(t, h, http.MethodPost, "/", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", resp.StatusCode)
	}
}

// The page loads nothing from elsewhere: every src and href is local (the CSP would block the
// rest, but a blocked file is a broken page).
func TestPageIsSelfContained(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "stamp.js", "whep.js", "input.js", "style.css"} {
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s mentions %q", name, bad)
			}
		}
	}
}

// node runs an ES module script that imports the page's pure modules and prints JSON into out.
func node(t *testing.T, script string, out any) {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir, err := filepath.Abs("static")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "test.mjs")
	base := (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir) + "/"}).String()
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(script, "STATIC/", base)), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(bin, f).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("node printed %q: %v", b, err)
	}
}

// stampRGBA paints a stamp of block side b into RGBA pixels 64·b wide and 2·b high, with colours
// one and zero for the bits.
func stampRGBA(us uint64, n uint32, b int, one, zero [3]byte) []byte {
	w, h := 64*b, 2*b
	px := make([]byte, w*h*4)
	bits := stampBits(us, n)
	for y := range h {
		for x := range w {
			c := zero
			if bits[y/b][x/b] {
				c = one
			}
			i := (y*w + x) * 4
			px[i], px[i+1], px[i+2], px[i+3] = c[0], c[1], c[2], 255
		}
	}
	return px
}

// The page's stamp decoder (stamp.js) reads what the Go reference writes, weighs colours by
// luma, and rejects a damaged stamp.
func TestStampJS(t *testing.T) {
	const us, n = uint64(1_760_000_000_123_456), uint32(4_000_000_123)
	white, black := [3]byte{255, 255, 255}, [3]byte{0, 0, 0}
	green, red := [3]byte{0, 255, 0}, [3]byte{255, 0, 0} // luma 150 (1) and 76 (0)
	damaged := stampRGBA(us, n, 16, white, black)
	for y := 16; y < 32; y++ { // flip frame-number bit 31 (row 1, column 31)
		for x := 31 * 16; x < 32*16; x++ {
			i := (y*64*16 + x) * 4
			damaged[i], damaged[i+1], damaged[i+2] = 255-damaged[i], 255-damaged[i+1], 255-damaged[i+2]
		}
	}
	cases := []struct {
		Name string `json:"name"`
		B    int    `json:"b"`
		RGBA string `json:"rgba"`
		OK   bool   `json:"ok"`
	}{
		{"white on black, B=16", 16, base64.StdEncoding.EncodeToString(stampRGBA(us, n, 16, white, black)), true},
		{"smallest blocks, B=4", 4, base64.StdEncoding.EncodeToString(stampRGBA(us, n, 4, white, black)), true},
		{"green is 1, red is 0", 5, base64.StdEncoding.EncodeToString(stampRGBA(us, n, 5, green, red)), true},
		{"one bit flipped", 16, base64.StdEncoding.EncodeToString(damaged), false},
	}
	in, _ := json.Marshal(cases)
	var out struct {
		Check uint32 `json:"check"`
		Sizes []int  `json:"sizes"`
		Got   []struct {
			OK    bool   `json:"ok"`
			US    string `json:"us"`
			Frame uint32 `json:"frame"`
		} `json:"got"`
	}
	node(t, `
import { crc32, decodeStamp, blockSize } from 'STATIC/stamp.js';
const cases = `+string(in)+`;
const got = cases.map((c) => {
  const rgba = Uint8ClampedArray.from(Buffer.from(c.rgba, 'base64'));
  const s = decodeStamp(rgba, 64 * c.b, c.b);
  return { ok: s.ok, us: s.renderUs.toString(), frame: s.frame };
});
const check = crc32(new TextEncoder().encode('123456789'));
console.log(JSON.stringify({ check, sizes: [blockSize(100), blockSize(256), blockSize(1024), blockSize(1920)], got }));
`, &out)
	if out.Check != 0xCBF43926 {
		t.Errorf("crc32(\"123456789\") = %#x, want 0xcbf43926", out.Check)
	}
	if want := []int{4, 4, 16, 30}; !equalInts(out.Sizes, want) {
		t.Errorf("blockSize = %v, want %v", out.Sizes, want)
	}
	for i, c := range cases {
		g := out.Got[i]
		if g.OK != c.OK {
			t.Errorf("%s: ok = %v, want %v", c.Name, g.OK, c.OK)
		}
		if c.OK && (g.US != "1760000000123456" || g.Frame != n) {
			t.Errorf("%s: read %s µs, frame %d", c.Name, g.US, g.Frame)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The signalling helpers (whep.js): the request URL, WHEP Link headers, error bodies, quantiles.
func TestWhepJS(t *testing.T) {
	var out map[string]json.RawMessage
	node(t, `
import { whepPath, parseLinks, iceServersFromLinks, isTurn, credentialExpired, errorMessage, quantile } from 'STATIC/whep.js';
const link = '<turn:192.0.2.2:3478?transport=udp>; rel="ice-server"; username="1700000000:alice"; credential="p,a;ss\\"w"; credential-type="password", ' +
  '<stun:stun.example.net>; rel=ice-server, <https://example.net/x>; rel="next"';
console.log(JSON.stringify({
  path: whepPath({ app: 'demo game', rank: 'fee', maxLatencyMs: 80.4, relay: true }),
  pathDefaults: whepPath({ app: 'demo' }),
  links: parseLinks(link).length,
  servers: iceServersFromLinks(link),
  turn: iceServersFromLinks(link).map(isTurn),
  expired: [credentialExpired({ username: '1700000000:alice' }, 1700000100000), credentialExpired({ username: '1700000000:alice' }, 1600000000000), credentialExpired({ username: 'static' }, 1e13)],
  errors: [errorMessage(503, '{"error":"no container","reason":"all busy"}'), errorMessage(404, '{"error":"no such app"}'), errorMessage(502, 'bad gateway\n'), errorMessage(500, '')],
  quantiles: [quantile([], 0.5), quantile([5, 1, 4, 2, 3], 0.5), quantile([5, 1, 4, 2, 3], 0.99), quantile([7], 0.01)],
}));
`, &out)
	want := map[string]string{
		"path":         `"/v1/render/whep?app=demo+game&rank=fee&max_latency_ms=80&relay=1"`,
		"pathDefaults": `"/v1/render/whep?app=demo&rank=index&max_latency_ms=0&relay=0"`,
		"links":        `3`,
		"servers":      `[{"urls":"turn:192.0.2.2:3478?transport=udp","username":"1700000000:alice","credential":"p,a;ss\"w"},{"urls":"stun:stun.example.net"}]`,
		"turn":         `[true,false]`,
		"expired":      `[true,false,false]`,
		"errors":       `["no container (all busy)","no such app","HTTP 502: bad gateway","HTTP 500"]`,
		"quantiles":    `[null,3,5,7]`,
	}
	for k, w := range want {
		if got := string(out[k]); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
}

// The page's sampler (sample.js) measures a window like the Go client's (node.statsSampler):
// frames from the decoder's count, skipped stamp numbers less the frames decoded and not
// presented, the longest gap with the window's end included, the most common size; a hidden page
// drops its window, and a window too short is not sent.
func TestSampleJS(t *testing.T) {
	var out map[string]json.RawMessage
	node(t, `
import { StatsWindow, statsEveryMs } from 'STATIC/sample.js';
import { whepPath } from 'STATIC/whep.js';
const w = new StatsWindow();
const early = w.flush(500, 10);
// 30 frames/s from t=1000 for 4 s, numbers 1..120, frames 50..54 never arrive, a 1.5 s silence
// after frame 100; 2 frames at 320x180, the rest 640x360; latency 10 ms, two frames 100 ms.
let t = 1000;
for (let n = 1; n <= 120; n++) {
  if (n >= 50 && n < 55) { t += 1000 / 30; continue; }
  if (n === 101) t += 1500;
  const small = n <= 2;
  w.frame(t, n, n === 60 || n === 61 ? 100 : 10, small ? 320 : 640, small ? 180 : 360);
  t += 1000 / 30;
}
const a = w.flush(t + 200, 117); // 117 decoded: 2 decoded and not presented
w.frame(t + 300, 121, 12, 640, 360);
w.pause(); // hidden: this window is dropped
const hidden = w.flush(t + 2000, 140);
w.frame(t + 5000, 1, null, 640, 360); // a new stream, numbers from 1, no stamp latency
w.frame(t + 5100, 2, null, 640, 360);
w.frame(t + 5200, 0, null, 640, 360); // no valid stamp
const b = w.flush(t + 6500, 200); // decoded count unknown since the pause: presented frames count
console.log(JSON.stringify({ early, a, hidden, b, every: [statsEveryMs(''), statsEveryMs('2'), statsEveryMs('30'), statsEveryMs('x')],
  path: whepPath({ app: 'demo', shareStats: true, fps: 60 }), pathFps: whepPath({ app: 'demo', fps: 500 }) }));
`, &out)
	want := map[string]string{
		"early":   `null`,
		"a":       `{"window_ms":5700,"frames":117,"frames_lost":3,"width":640,"height":360,"latency_ms_p50":10,"latency_ms_p99":100,"longest_gap_ms":1533}`,
		"hidden":  `null`,
		"b":       `{"window_ms":1500,"frames":3,"frames_lost":0,"width":640,"height":360,"latency_ms_p50":0,"latency_ms_p99":0,"longest_gap_ms":1300}`,
		"every":   `[60000,5000,30000,60000]`,
		"path":    `"/v1/render/whep?app=demo&rank=index&max_latency_ms=0&relay=0&share_stats=1&fps=60"`,
		"pathFps": `"/v1/render/whep?app=demo&rank=index&max_latency_ms=0&relay=0"`,
	}
	for k, w := range want {
		if got := string(out[k]); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
}

// Pointer positions map to the picture, not the element: letterboxed, pillarboxed, cropped,
// stretched.
func TestContentPointJS(t *testing.T) {
	var got [][]*float64
	node(t, `
import { contentPoint, KEY_CODE } from 'STATIC/input.js';
const wide = { left: 10, top: 20, width: 1000, height: 1000 }; // a 1000×1000 box
const r = (p) => (p ? [Math.round(p.x * 1e4) / 1e4, Math.round(p.y * 1e4) / 1e4] : [null, null]);
console.log(JSON.stringify([
  r(contentPoint(wide, 1000, 500, 'contain', 10, 270)),   // letterboxed 1000×500 at y 250..750: top-left
  r(contentPoint(wide, 1000, 500, 'contain', 1010, 770)), // bottom-right
  r(contentPoint(wide, 1000, 500, 'contain', 510, 100)),  // above the picture: y < 0
  r(contentPoint(wide, 500, 1000, 'contain', 510, 520)),  // pillarboxed at x 250..750: centre
  r(contentPoint(wide, 1000, 500, 'cover', 10, 20)),      // cropped: 2000×1000, x from -500
  r(contentPoint(wide, 1000, 500, 'fill', 260, 770)),     // stretched
  r(contentPoint(wide, 0, 0, 'contain', 10, 20)),         // no video yet
  ['KeyW', 'ArrowLeft', 'Digit1', '', 'Key W', 'A'.repeat(33)].map((k) => (KEY_CODE.test(k) ? 1 : 0)),
]));
`, &got)
	want := [][]float64{{0, 0}, {1, 1}, {0.5, -0.34}, {0.5, 0.5}, {0.25, 0}, {0.25, 0.75}}
	for i, w := range want {
		if got[i][0] == nil || *got[i][0] != w[0] || *got[i][1] != w[1] {
			t.Errorf("case %d: got %v, want %v", i, deref(got[i]), w)
		}
	}
	if got[6][0] != nil {
		t.Errorf("a video with no size mapped to %v", deref(got[6]))
	}
	if k := deref(got[7]); !slices.Equal(k, []float64{1, 1, 1, 0, 0, 0}) {
		t.Errorf("KEY_CODE accepts %v, want [1 1 1 0 0 0]", k)
	}
}

func deref(ps []*float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		if p != nil {
			out[i] = *p
		}
	}
	return out
}

// TestServeFixture serves the page and the fake node until the test times out, for a person to
// try the page in a browser: RENDERMESH_WEB_SERVE=127.0.0.1:8080 go test -run TestServeFixture
// -timeout 1h ./render/web
func TestServeFixture(t *testing.T) {
	addr := os.Getenv("RENDERMESH_WEB_SERVE")
	if addr == "" {
		t.Skip("set RENDERMESH_WEB_SERVE=host:port to serve the page and a fake node")
	}
	n := newFakeNode(t)
	defer n.Close()
	t.Logf("serving on http://%s/", addr)
	if err := http.ListenAndServe(addr, n.Handler()); err != nil {
		t.Fatal(err)
	}
}
