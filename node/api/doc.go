// Package api is the daemon's local API: HTTP and JSON on the unix socket
// HOME/api.sock (mode 0600) and, optionally, on one loopback TCP listener
// (ListenTCP) that also serves the web app (Config.App, node/ui). Over TCP
// a request needs the bearer token of HOME/api.token or a session of the
// app, a loopback Host header (against DNS rebinding), and, when a browser
// sends something that changes state, the listener's own origin (Go's
// CrossOriginProtection); every answer carries the security headers and
// none carries CORS headers. It has the server (Server), the client the
// sealpost command uses (Client), the OpenAPI 3 document the daemon serves
// at /openapi.json, and server-sent events at /v1/events.
//
// Every failed request is answered with {"error": {"code", "message"}};
// the codes are stable strings (Code), and one table maps each to its HTTP
// status and to the exit code of the sealpost command.
//
// Routes are one table (Server.routes, with the node's in nodeRoutes and
// the messaging service's, Config.Messaging, in messagingRoutes).
// A feature adds its routes in a file of its own, the methods it needs to
// the Node interface, its error sentinels to the sentinels table, its
// client methods to Client, and its paths to openapi.json; a test checks
// that the routes and the document agree.
package api

// Default ports of the TCP listener (API and web app) and of the metrics
// listener (DESIGN.md §6); the first starts with --api or `sealpost ui`,
// the second with --metrics.
const (
	DefaultPort        = 7711
	DefaultMetricsPort = 7712
)
