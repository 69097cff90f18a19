package ui

import (
	"fmt"
	"net/http"
	"strings"

	"rsc.io/qr"
)

// MaxQRText bounds the text QRPath draws (an invite link is about 300
// bytes).
const MaxQRText = 1024

// quietZone is the white border around a QR code, in modules, that
// scanners need.
const quietZone = 4

// QRSVG draws text as a QR code (error correction level M) in SVG: one
// path of the dark modules, a run of them in a row at a time, on a white
// square. The SVG holds nothing but shapes, never the text.
func QRSVG(text string) ([]byte, error) {
	if len(text) > MaxQRText {
		return nil, fmt.Errorf("ui: QR text of %d bytes, limit %d", len(text), MaxQRText)
	}
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return nil, fmt.Errorf("ui: QR code: %w", err)
	}
	n := code.Size + 2*quietZone
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y := range code.Size {
		for x := 0; x < code.Size; {
			if !code.Black(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < code.Size && code.Black(x+run, y) {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+quietZone, y+quietZone, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return []byte(b.String()), nil
}

// qr answers GET QRPath?text=... for a session.
func (a *App) qr(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !a.Authorized(r) {
		http.Error(w, "log in first: run sealpost ui", http.StatusUnauthorized)
		return
	}
	svg, err := QRSVG(r.URL.Query().Get("text"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(svg)
}
