// Package web is the browser client of the render path, embedded in the node binary: a page where
// a person picks an app, connects, watches the stream and plays it.
//
// The page (static/index.html, app.js, style.css; no framework, no build step, nothing fetched from
// elsewhere) talks to the node it was served from:
//
//   - GET /v1/render/apps lists the apps: {"apps":["demo",...]}.
//   - POST /v1/render/whep?app=&rank=&max_latency_ms=&relay=0|1 with the SDP offer (Content-Type
//     application/sdp, ICE gathered, no trickle) answers 201 with the SDP answer, a Location
//     header naming the session, X-Rendermesh-Match (JSON: container, indexer, price, match_ms,
//     session_id) and, optionally, one WHEP Link header per ICE server
//     (<turn:host:port?transport=udp>; rel="ice-server"; username="u"; credential="p"), which the
//     page remembers for its next connects. An error is a non-2xx JSON {"error":"...","reason":"..."}.
//   - DELETE <Location> ends the session.
//
// On the data channel labelled "input" it sends the events of package render/input and answers
// pings. From each frame's stamp (the contract is in app.js) it measures render-to-display latency.
// window.rendermesh exposes the state and the stats to automation; e2e/run.mjs drives the page in
// Chromium.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// contentTypes are set explicitly rather than read from the system's MIME tables: a module
// script served as anything but JavaScript does not run.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".ico":  "image/x-icon",
}

// csp keeps the page to its own origin: no external URL can load, even by mistake.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"

// Handler serves the page: index.html at "/", the other files by name. Every response says
// Cache-Control: no-cache and carries an ETag, so a browser revalidates and picks up a new binary's
// page at once but does not download an unchanged one again.
func Handler() http.Handler {
	root, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	etags := map[string]string{}
	_ = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		if name == "/" {
			name = "/index.html"
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if tag, ok := etags[name]; ok {
			h.Set("ETag", tag)
			if ct, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
				h.Set("Content-Type", ct)
			}
		}
		if strings.HasSuffix(name, ".html") {
			h.Set("Content-Security-Policy", csp)
		}
		files.ServeHTTP(w, r)
	})
}

// Paths lists the URL paths Handler serves ("/" and each file by name), so that a server can route
// exactly them and leave every other path to its own handlers.
func Paths() []string {
	out := []string{"/"}
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, "static"))
		}
		return err
	})
	return out
}
