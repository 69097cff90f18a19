package protocol

import (
	"errors"
	"fmt"
)

// Errors. Each sentinel is sent on the wire as the Code of the same name
// (codes below); a decoder returns them wrapped with detail, so compare with
// errors.Is.
var (
	// ErrMalformed: a frame or message did not decode, or decoded to
	// something Validate refuses (a missing field, a wrong length, an
	// unknown enum value, unknown fields, a non-canonical encoding).
	ErrMalformed = errors.New("protocol: malformed message")
	// ErrTruncated: the stream ended inside a frame. It is an ErrMalformed.
	ErrTruncated = fmt.Errorf("%w: truncated frame", ErrMalformed)
	// ErrTooLarge: a frame, message, field or list is over its limit.
	ErrTooLarge = errors.New("protocol: too large")
	// ErrUnsupportedVersion: a message's version field names a version this
	// package does not speak.
	ErrUnsupportedVersion = errors.New("protocol: unsupported version")
	// ErrRateLimited: the peer refuses more requests for now.
	ErrRateLimited = errors.New("protocol: rate limited")
	// ErrUnknownSession: no session matches the ratchet message; the sender
	// needs a new session (with a PQXDH initial message).
	ErrUnknownSession = errors.New("protocol: unknown session")
	// ErrDecrypt: the ciphertext did not authenticate.
	ErrDecrypt = errors.New("protocol: decryption failed")
	// ErrDuplicate: the peer already had it. For a delivery this is a
	// success (see Ack.Committed).
	ErrDuplicate = errors.New("protocol: duplicate")
	// ErrUntrustedIdentity: the sender's identity key is not the one the
	// receiver pinned for that contact, device or mailbox.
	ErrUntrustedIdentity = errors.New("protocol: untrusted identity")
	// ErrQuotaExceeded: a storage or count quota of the peer is full.
	ErrQuotaExceeded = errors.New("protocol: quota exceeded")
	// ErrInternal: a fault on the answering side; the request may succeed
	// later. Also what CodeOf gives any error not in the table.
	ErrInternal = errors.New("protocol: internal error")
	// ErrNotFound: the requested object does not exist.
	ErrNotFound = errors.New("protocol: not found")
	// ErrExpired: the requested object existed and is gone; for a bundle
	// fetch, the invite's pinned bundle is no longer served and the user
	// needs a new invite.
	ErrExpired = errors.New("protocol: expired")
	// ErrWrongSender: a claimed sender (Deliver.Device) is not the peer at
	// the other end of the stream.
	ErrWrongSender = errors.New("protocol: sender does not match the connection")
	// ErrDiskFull: the answering side's disk is too full to store what
	// was sent (a full disk, not a quota); it may succeed later.
	ErrDiskFull = errors.New("protocol: the peer's disk is full")
)

// Errors of the relay protocol (docs/PROTOCOL.md §10.5), codes 32-63.
var (
	// ErrUnknownMailbox: the relay holds no mailbox of that ID (it was
	// never created, or the owner or the relay deleted it).
	ErrUnknownMailbox = errors.New("protocol: unknown mailbox")
	// ErrTokenRefused: the deposit token is not registered for the mailbox,
	// or was revoked.
	ErrTokenRefused = errors.New("protocol: deposit token refused")
	// ErrMailboxQuota: the mailbox holds its quota of envelopes or bytes
	// (or of tokens or prekeys, for the owner's uploads).
	ErrMailboxQuota = errors.New("protocol: mailbox quota exceeded")
	// ErrTokenQuota: the envelopes stored under this token reach its quota
	// of count or bytes.
	ErrTokenQuota = errors.New("protocol: token quota exceeded")
	// ErrStoreFull: the relay's total store quota is used up.
	ErrStoreFull = errors.New("protocol: relay store full")
	// ErrEnvelopeTooLarge: the envelope is over the relay's configured
	// envelope size limit (which may be below MaxEnvelope).
	ErrEnvelopeTooLarge = errors.New("protocol: envelope too large for this relay")
	// ErrExpiredChallenge: the request's challenge is not the stream's
	// current one (already used, replaced, or never issued) or is too old.
	ErrExpiredChallenge = errors.New("protocol: expired challenge")
	// ErrBadSignature: the owner signature does not verify.
	ErrBadSignature = errors.New("protocol: bad signature")
	// ErrTooManyMailboxes: the connection created as many mailboxes as the
	// relay allows one connection.
	ErrTooManyMailboxes = errors.New("protocol: too many mailboxes for this connection")
	// ErrSubscriptionEnded: a newer subscription to the same mailbox
	// replaced this one.
	ErrSubscriptionEnded = errors.New("protocol: subscription ended")
)

// Errors of the group log (docs/PROTOCOL.md §11.5), codes 64-79.
var (
	// ErrUnknownLog: the relay holds no group log of that ID (never
	// created, or deleted after it was idle).
	ErrUnknownLog = errors.New("protocol: unknown group log")
	// ErrWrongEpoch: the request's epoch is not the log's open epoch (for
	// an append; the answer names the open one) or is one whose entries
	// the relay no longer keeps (for a read). For a commit it means that
	// another commit for that epoch came first.
	ErrWrongEpoch = errors.New("protocol: wrong epoch")
	// ErrTooManyLogs: the peer, or its address range, created as many
	// group logs (that still exist) as the relay allows it.
	ErrTooManyLogs = errors.New("protocol: too many group logs made by this creator")
)

// Code is a wire error code: the outcome a peer reports for one request
// (Ack.Code, BundleResponse.Code). Zero is never valid on the wire.
//
// Codes 1-31 are common to every protocol, 32-63 belong to the relay
// protocol, 64-79 to the group log, 80 and above are unassigned. A code is
// added in three places:
// the Code enum of internal/pb/code.proto, a constant here, a row of codes.
type Code int32

// The wire codes. Their numbers are the enum values of code.proto.
const (
	CodeOK                 Code = 1
	CodeMalformed          Code = 2
	CodeTooLarge           Code = 3
	CodeUnsupportedVersion Code = 4
	CodeRateLimited        Code = 5
	CodeUnknownSession     Code = 6
	CodeDecryptFailed      Code = 7
	CodeDuplicate          Code = 8
	CodeUntrustedIdentity  Code = 9
	CodeQuotaExceeded      Code = 10
	CodeInternal           Code = 11
	CodeNotFound           Code = 12
	CodeExpired            Code = 13
	CodeWrongSender        Code = 14
	CodeDiskFull           Code = 15

	CodeUnknownMailbox    Code = 32
	CodeTokenRefused      Code = 33
	CodeMailboxQuota      Code = 34
	CodeTokenQuota        Code = 35
	CodeStoreFull         Code = 36
	CodeEnvelopeTooLarge  Code = 37
	CodeExpiredChallenge  Code = 38
	CodeBadSignature      Code = 39
	CodeTooManyMailboxes  Code = 40
	CodeSubscriptionEnded Code = 41

	CodeUnknownLog  Code = 64
	CodeWrongEpoch  Code = 65
	CodeTooManyLogs Code = 66
)

// codes is the one table between wire codes, their names (stable snake_case,
// for logs and the local API) and error sentinels. Read-only.
var codes = [...]struct {
	code Code
	name string
	err  error
}{
	{CodeOK, "ok", nil},
	{CodeMalformed, "malformed", ErrMalformed},
	{CodeTooLarge, "too_large", ErrTooLarge},
	{CodeUnsupportedVersion, "unsupported_version", ErrUnsupportedVersion},
	{CodeRateLimited, "rate_limited", ErrRateLimited},
	{CodeUnknownSession, "unknown_session", ErrUnknownSession},
	{CodeDecryptFailed, "decrypt_failed", ErrDecrypt},
	{CodeDuplicate, "duplicate", ErrDuplicate},
	{CodeUntrustedIdentity, "untrusted_identity", ErrUntrustedIdentity},
	{CodeQuotaExceeded, "quota_exceeded", ErrQuotaExceeded},
	{CodeInternal, "internal", ErrInternal},
	{CodeNotFound, "not_found", ErrNotFound},
	{CodeExpired, "expired", ErrExpired},
	{CodeWrongSender, "wrong_sender", ErrWrongSender},
	{CodeDiskFull, "disk_full", ErrDiskFull},

	{CodeUnknownMailbox, "unknown_mailbox", ErrUnknownMailbox},
	{CodeTokenRefused, "token_refused", ErrTokenRefused},
	{CodeMailboxQuota, "mailbox_quota", ErrMailboxQuota},
	{CodeTokenQuota, "token_quota", ErrTokenQuota},
	{CodeStoreFull, "store_full", ErrStoreFull},
	{CodeEnvelopeTooLarge, "envelope_too_large", ErrEnvelopeTooLarge},
	{CodeExpiredChallenge, "expired_challenge", ErrExpiredChallenge},
	{CodeBadSignature, "bad_signature", ErrBadSignature},
	{CodeTooManyMailboxes, "too_many_mailboxes", ErrTooManyMailboxes},
	{CodeSubscriptionEnded, "subscription_ended", ErrSubscriptionEnded},

	{CodeUnknownLog, "unknown_log", ErrUnknownLog},
	{CodeWrongEpoch, "wrong_epoch", ErrWrongEpoch},
	{CodeTooManyLogs, "too_many_logs", ErrTooManyLogs},
}

// CodeOf returns the wire code for err: CodeOK for nil, the code of the
// first sentinel err wraps, and CodeInternal for anything else, so that no
// detail of a local failure reaches the peer.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	for _, c := range codes {
		if c.err != nil && errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// Err returns the sentinel for c: nil for CodeOK, and for a code not in the
// table an error that wraps ErrMalformed (a decoder never lets one through).
func (c Code) Err() error {
	for _, e := range codes {
		if e.code == c {
			return e.err
		}
	}
	return fmt.Errorf("%w: unknown code %d", ErrMalformed, int32(c))
}

// String returns the code's stable name ("ok", "untrusted_identity", ...),
// or "code(N)" for a code not in the table.
func (c Code) String() string {
	for _, e := range codes {
		if e.code == c {
			return e.name
		}
	}
	return fmt.Sprintf("code(%d)", int32(c))
}

// Known reports whether c is a code of this version of the protocol.
func (c Code) Known() bool {
	for _, e := range codes {
		if e.code == c {
			return true
		}
	}
	return false
}

func (c Code) check() error {
	if c == 0 {
		return fmt.Errorf("%w: code missing", ErrMalformed)
	}
	if !c.Known() {
		return fmt.Errorf("%w: unknown code %d", ErrMalformed, int32(c))
	}
	return nil
}
