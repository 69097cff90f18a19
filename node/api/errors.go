package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
)

// Code is a stable error code string. The daemon answers every failed
// request with {"error": {"code": ..., "message": ...}}; the CLI turns the
// code into its exit status. Codes never change meaning; new ones are added
// to codes below, with their HTTP status and exit code.
type Code string

const (
	CodeBadRequest        Code = "bad_request"        // malformed request or argument
	CodeNotFound          Code = "not_found"          // no such route or object
	CodeConflict          Code = "conflict"           // the request contradicts the node's state
	CodeUnauthorized      Code = "unauthorized"       // missing or wrong bearer token (TCP only)
	CodeForbiddenHost     Code = "forbidden_host"     // Host header not a loopback name (TCP only)
	CodeForbiddenOrigin   Code = "forbidden_origin"   // a browser's cross-origin state-changing request (TCP only)
	CodeInternal          Code = "internal"           // a fault in the daemon
	CodeUnavailable       Code = "unavailable"        // the daemon is shutting down
	CodeNetwork           Code = "network"            // a peer or relay could not be reached
	CodeUntrustedIdentity Code = "untrusted_identity" // a contact's identity key changed
	CodeLimit             Code = "limit"              // refused by a limit or quota
	CodeTimeout           Code = "timeout"            // a wait ran out of time
	CodeNoDaemon          Code = "no_daemon"          // client side: nothing listens on the socket
	CodeDiskFull          Code = "disk_full"          // the disk holding the home is full: writes are refused until there is room
)

// Exit codes of the sealpost command (DESIGN.md §6).
const (
	ExitOK          = 0
	ExitUser        = 1
	ExitInternal    = 2
	ExitNetwork     = 3
	ExitUntrusted   = 4
	ExitLimit       = 5
	ExitNoDaemon    = 6
	ExitWaitTimeout = 7
)

// codes is the one table from error codes to HTTP statuses and exit codes.
var codes = map[Code]struct{ status, exit int }{
	CodeBadRequest:        {http.StatusBadRequest, ExitUser},
	CodeNotFound:          {http.StatusNotFound, ExitUser},
	CodeConflict:          {http.StatusConflict, ExitUser},
	CodeUnauthorized:      {http.StatusUnauthorized, ExitUser},
	CodeForbiddenHost:     {http.StatusForbidden, ExitUser},
	CodeForbiddenOrigin:   {http.StatusForbidden, ExitUser},
	CodeInternal:          {http.StatusInternalServerError, ExitInternal},
	CodeUnavailable:       {http.StatusServiceUnavailable, ExitInternal},
	CodeNetwork:           {http.StatusBadGateway, ExitNetwork},
	CodeUntrustedIdentity: {http.StatusConflict, ExitUntrusted},
	CodeLimit:             {http.StatusTooManyRequests, ExitLimit},
	CodeTimeout:           {http.StatusGatewayTimeout, ExitWaitTimeout},
	CodeNoDaemon:          {http.StatusServiceUnavailable, ExitNoDaemon},
	CodeDiskFull:          {http.StatusInsufficientStorage, ExitLimit},
}

// HTTPStatus is the status the daemon answers the code with.
func (c Code) HTTPStatus() int {
	if e, ok := codes[c]; ok {
		return e.status
	}
	return http.StatusInternalServerError
}

// ExitCode is the sealpost command's exit status for the code; an unknown
// code (from a newer daemon) is an internal error.
func (c Code) ExitCode() int {
	if e, ok := codes[c]; ok {
		return e.exit
	}
	return ExitInternal
}

// Error is an API error: what the daemon sends and what the client returns.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// status, if set, is the HTTP status instead of the code's (413 for
	// a request body over its limit, with CodeLimit).
	status int
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the code and a formatted message. Messages
// are lowercase, shown to users as they are.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrNoDaemon is returned by the client when no daemon listens on the home's
// socket (no socket, or a stale one).
var ErrNoDaemon = &Error{Code: CodeNoDaemon, Message: "no daemon running"}

// errorBody is the JSON body of a failed request.
type errorBody struct {
	Error *Error `json:"error"`
}

// sentinels maps the errors handlers return to codes, first match wins.
// Features add their sentinels here (for example an identity change to
// CodeUntrustedIdentity).
var sentinels = []struct {
	err  error
	code Code
}{
	{node.ErrBadAddr, CodeBadRequest},
	{node.ErrUnreachable, CodeNetwork},
	{node.ErrDeviceNotFound, CodeNetwork},
	{node.ErrClosed, CodeUnavailable},
	// The store refuses writes on a full disk, whichever service wrote.
	{store.ErrDiskFull, CodeDiskFull},
	// Messaging (node/messaging/errors.go gives each its code); an
	// identity change first, so that it wins over what it wraps.
	{messaging.ErrUntrustedIdentity, CodeUntrustedIdentity},
	{messaging.ErrUnknownContact, CodeNotFound},
	{messaging.ErrUnknownMessage, CodeNotFound},
	{messaging.ErrInvalidLink, CodeBadRequest},
	{messaging.ErrInvalidName, CodeBadRequest},
	{messaging.ErrEmptyMessage, CodeBadRequest},
	{messaging.ErrBadState, CodeBadRequest},
	{messaging.ErrInviteExpired, CodeConflict},
	{messaging.ErrNameTaken, CodeConflict},
	{messaging.ErrContactExists, CodeConflict},
	{messaging.ErrSafetyMismatch, CodeConflict},
	{messaging.ErrNotAccepted, CodeConflict},
	{messaging.ErrTooLong, CodeLimit},
	{messaging.ErrRateLimited, CodeLimit},
	{messaging.ErrUnreachable, CodeNetwork},
	{messaging.ErrPeerRefused, CodeNetwork},
	{messaging.ErrBadBundle, CodeNetwork},
	{messaging.ErrClosed, CodeUnavailable},
	{messaging.ErrRelayExists, CodeConflict},
	{messaging.ErrUnknownRelay, CodeNotFound},
	{messaging.ErrInvalidRelay, CodeBadRequest},
	{messaging.ErrTooManyRelays, CodeLimit},
	{messaging.ErrNoRelays, CodeUnavailable},
	// Attachments (node/files).
	{files.ErrUnknownFile, CodeNotFound},
	{files.ErrBadInput, CodeBadRequest},
	{files.ErrTooLarge, CodeLimit},
	{files.ErrNoSpace, CodeLimit},
	{files.ErrNotSaved, CodeConflict},
	{files.ErrNoSource, CodeNetwork},
	{files.ErrClosed, CodeUnavailable},
	// Groups (node/groups); an identity change first.
	{groups.ErrUntrustedIdentity, CodeUntrustedIdentity},
	{groups.ErrUnknownGroup, CodeNotFound},
	{groups.ErrUnknownContact, CodeNotFound},
	{groups.ErrUnknownMessage, CodeNotFound},
	{groups.ErrAmbiguous, CodeBadRequest},
	{groups.ErrInvalidName, CodeBadRequest},
	{groups.ErrEmptyMessage, CodeBadRequest},
	{groups.ErrNotAdmin, CodeConflict},
	{groups.ErrNotMember, CodeConflict},
	{groups.ErrNotRequest, CodeConflict},
	{groups.ErrLastAdmin, CodeConflict},
	{groups.ErrNoRelay, CodeBadRequest},
	{groups.ErrTooMany, CodeLimit},
	{groups.ErrTooLong, CodeLimit},
	{groups.ErrClosed, CodeUnavailable},
	{context.DeadlineExceeded, CodeTimeout},
}

// toAPIError turns what a handler returned into the error sent to the client.
// Errors that are neither *Error nor a known sentinel are internal: their
// text is logged, not sent.
func toAPIError(err error) (e *Error, internal bool) {
	if errors.As(err, &e) {
		return e, false
	}
	if df := (*store.DiskFullError)(nil); errors.As(err, &df) {
		return &Error{Code: CodeDiskFull, Message: fmt.Sprintf("the disk holding %s is full: %s free, sealpost needs %s free to write; free some space, and writes resume by themselves",
			df.Dir, store.MiB(df.Free), store.MiB(df.Need))}, false
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return &Error{Code: s.code, Message: err.Error()}, false
		}
	}
	return &Error{Code: CodeInternal, Message: "internal error"}, true
}
