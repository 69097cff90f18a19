// Package ui is the web app the daemon serves on its loopback TCP
// listener (node/api's ListenTCP), next to the API: the page, its script
// and style, embedded with go:embed and served compressed with ETags; the
// one-time login links that `sealpost ui` prints (Login); the session
// cookies they become (Authorized); and invites drawn as QR codes in SVG
// (QRSVG).
//
// The app (assets/app.js) is plain JavaScript with no dependency and no
// build step: a client of the API's routes (/v1/...) and its event stream
// (/v1/events) like any other, so everything it shows is what the
// OpenAPI document describes. It never parses text as HTML: it builds the
// page with DOM calls and text nodes, and the Content-Security-Policy the
// listener sends (Trusted Types without a policy) makes the browser refuse
// to.
//
// The caller wires App into node/api (Config.App), which applies the
// listener's rules to the app's paths as to the API's: loopback Host
// names only, cross-origin protection, the security headers. App itself
// adds what only it knows: a session counts only on a same-origin request
// (Sec-Fetch-Site), logins work once within LoginTTL, sessions last
// SessionTTL, and both live in memory, bounded, as hashes.
//
// New conversation kinds (groups) and message bodies (attachments) slot
// into app.js where its header comment says; the list, paging, live
// updates and delivery states are shared.
package ui
