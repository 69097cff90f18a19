package messaging

import "errors"

// Errors. The API maps each to its code (and so the sealpost command's
// exit status); the mapping the local API should use is given with each.
// Errors are returned wrapped with detail: compare with errors.Is.
var (
	// ErrUnknownContact: no contact has that name or user ID. API:
	// not_found (exit 1).
	ErrUnknownContact = errors.New("messaging: unknown contact")
	// ErrUntrustedIdentity: the contact presented a new identity key;
	// sending and accepting stop until Verify accepts it. API:
	// untrusted_identity (exit 4).
	ErrUntrustedIdentity = errors.New("messaging: the contact's identity key changed; verify it first")
	// ErrInvalidLink: the invite link does not parse, or is this node's
	// own. API: bad_request (exit 1).
	ErrInvalidLink = errors.New("messaging: invalid invite link")
	// ErrInviteExpired: the inviter no longer serves the bundle the invite
	// pins (or it is too old): ask for a new invite. API: conflict (exit
	// 1).
	ErrInviteExpired = errors.New("messaging: the invite has expired; ask for a new one")
	// ErrInvalidName: a contact name is empty, too long (over MaxName
	// bytes), has control characters or white space at an end, or has the
	// form of a user ID. API: bad_request (exit 1).
	ErrInvalidName = errors.New("messaging: invalid contact name")
	// ErrNameTaken: another contact has the name. API: conflict (exit 1).
	ErrNameTaken = errors.New("messaging: another contact has that name")
	// ErrContactExists: the invite is an accepted contact's, and another
	// name was asked for it. API: conflict (exit 1).
	ErrContactExists = errors.New("messaging: already a contact")
	// ErrSafetyMismatch: the safety number given to Verify is not the
	// contact's. API: conflict (exit 1).
	ErrSafetyMismatch = errors.New("messaging: the safety number does not match")
	// ErrNotAccepted: the contact is a message request; Accept it before
	// sending. API: conflict (exit 1).
	ErrNotAccepted = errors.New("messaging: the contact is a message request; accept it first")
	// ErrEmptyMessage: the text is empty or not UTF-8. API: bad_request
	// (exit 1).
	ErrEmptyMessage = errors.New("messaging: empty or invalid text")
	// ErrTooLong: the text is over MaxText bytes. API: limit (exit 5).
	ErrTooLong = errors.New("messaging: text too long")
	// ErrUnknownMessage: no message has that ID (WaitState). API:
	// not_found (exit 1).
	ErrUnknownMessage = errors.New("messaging: unknown message")
	// ErrBadState: WaitState was asked for a state other than sent,
	// delivered or read. API: bad_request (exit 1).
	ErrBadState = errors.New("messaging: cannot wait for that state")
	// ErrUnreachable: the contact's device could not be reached (needed
	// to fetch its bundle). API: network (exit 3).
	ErrUnreachable = errors.New("messaging: peer unreachable")
	// ErrRateLimited: the peer refused the request for now. API: limit
	// (exit 5).
	ErrRateLimited = errors.New("messaging: rate limited by the peer")
	// ErrPeerRefused: the peer answered a request with an error code. API:
	// network (exit 3).
	ErrPeerRefused = errors.New("messaging: the peer refused the request")
	// ErrBadBundle: the bundle the peer served does not verify, or is not
	// the one the invite pins (a wrong or malicious device). API: network
	// (exit 3).
	ErrBadBundle = errors.New("messaging: the peer's prekey bundle is invalid")
	// ErrClosed: the service is closed. API: unavailable (exit 2).
	ErrClosed = errors.New("messaging: closed")

	// errNoSession: the contact has no session that can send (internal).
	errNoSession = errors.New("messaging: no session with the contact")
)
