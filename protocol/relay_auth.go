package protocol

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
)

// Signature labels of the relay protocol (docs/PROTOCOL.md §1.2, §10.3).
const (
	// OwnerLabel prefixes what a mailbox owner signs for an owner op.
	OwnerLabel = "sealpost/v1/relay-owner"
	// ReceiptLabel prefixes what a relay signs in a custody receipt.
	ReceiptLabel = "sealpost/v1/relay-receipt"
	// InviteTokenLabel is the HKDF info prefix of an invite's deposit token.
	InviteTokenLabel = "sealpost/v1/invite-token"
)

// InviteTokenSize is the size of the deposit token derived from an invite.
const InviteTokenSize = 16

// TokenHash is SHA-256 of a deposit token: what the owner registers, so
// that the relay (and a copy of its disk) never holds a token itself.
type TokenHash [TokenHashSize]byte

// IsZero reports whether h is all zero (absent).
func (h TokenHash) IsZero() bool { return h == TokenHash{} }

// HashToken returns SHA-256(token).
func HashToken(token []byte) TokenHash { return sha256.Sum256(token) }

// InviteToken derives the deposit (and card) token of an invite for one
// mailbox:
//
//	T = HKDF-SHA256(ikm = S, salt = none, info = "sealpost/v1/invite-token" || 0x00 || mailbox ID, L = 16)
//
// The inviter registers HashToken(T) on the relay; whoever holds the invite
// derives T, so the relay sees only T and cannot derive S (or the card key
// derived from it).
func InviteToken(s InviteSecret, mailbox MailboxID) []byte {
	info := make([]byte, 0, len(InviteTokenLabel)+1+len(mailbox))
	info = append(info, InviteTokenLabel...)
	info = append(info, 0)
	info = append(info, mailbox[:]...)
	t, err := hkdf.Key(sha256.New, s[:], nil, string(info), InviteTokenSize)
	if err != nil {
		panic("protocol: HKDF of 16 bytes failed: " + err.Error()) // cannot happen for L = 16
	}
	return t
}

// EnvelopeHash is SHA-256 of a whole sealed envelope: what a custody
// receipt names.
func EnvelopeHash(envelope []byte) [32]byte { return sha256.Sum256(envelope) }

// ownerBody appends the encoding an owner signs for r (docs/PROTOCOL.md
// §10.3), after the label:
//
//	len8(relay) || relay || challenge (32) || op (1) || op fields
func (r *RelayRequest) ownerBody(relay []byte) ([]byte, error) {
	if !r.Op.Owner() {
		return nil, fmt.Errorf("%w: relay %s is not an owner op", ErrMalformed, r.Op)
	}
	if err := checkPeerID(relay, "relay peer ID"); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 128+8*len(r.Seqs)+32*len(r.Blobs))
	b = append(b, byte(len(relay)))
	b = append(b, relay...)
	b = append(b, r.Challenge[:]...)
	b = append(b, byte(r.Op))
	switch r.Op {
	case RelayCreate:
		b = append(b, r.OwnerKey[:]...)
		b = append(b, r.SealingKey[:]...)
		return b, nil
	}
	b = append(b, r.Mailbox[:]...)
	switch r.Op {
	case RelayRegisterToken:
		b = append(b, r.TokenHash[:]...)
		b = binary.BigEndian.AppendUint64(b, r.Count)
		b = binary.BigEndian.AppendUint64(b, r.Bytes)
	case RelayRevokeToken:
		b = append(b, r.TokenHash[:]...)
	case RelayFetch:
		b = binary.BigEndian.AppendUint64(b, r.After)
		b = binary.BigEndian.AppendUint32(b, r.Limit)
	case RelaySubscribe:
		b = binary.BigEndian.AppendUint64(b, r.After)
	case RelayAck:
		if len(r.Seqs) > MaxAckSeqs {
			return nil, fmt.Errorf("%w: relay ack: %d sequence numbers, limit %d", ErrTooLarge, len(r.Seqs), MaxAckSeqs)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Seqs)))
		for _, s := range r.Seqs {
			b = binary.BigEndian.AppendUint64(b, s)
		}
	case RelayDeleteMailbox:
	case RelayPutCard:
		b = append(b, r.TokenHash[:]...)
		h := sha256.Sum256(r.Blob)
		b = append(b, h[:]...)
	case RelayPutPrekeys:
		if len(r.Blobs) > MaxPrekeyBatch {
			return nil, fmt.Errorf("%w: relay put_prekeys: %d prekeys, limit %d", ErrTooLarge, len(r.Blobs), MaxPrekeyBatch)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(max(r.ExpiresAt, 0)))
		b = append(b, byte(len(r.Blobs)))
		for _, blob := range r.Blobs {
			h := sha256.Sum256(blob)
			b = append(b, h[:]...)
		}
	}
	return b, nil
}

// SignOwner sets r.Signature: the owner key's signature, for the relay whose
// peer ID is relay, over OwnerLabel || 0x00 || the encoding of §10.3, which
// binds the relay, r.Challenge (set it first: the stream's current
// challenge), the op and its fields. For RelayCreate, key is the new
// mailbox's owner key (r.OwnerKey must be its public half).
func (r *RelayRequest) SignOwner(relay []byte, key ed25519.PrivateKey) error {
	body, err := r.ownerBody(relay)
	if err != nil {
		return err
	}
	r.Signature = identity.SignWith(key, OwnerLabel, body)
	return nil
}

// VerifyOwner reports whether r.Signature is owner's signature over r for
// the relay whose peer ID is relay. It checks owner's point (canonical, not
// of small order). The relay also checks that r.Challenge is the stream's
// current challenge, which this does not know.
func (r *RelayRequest) VerifyOwner(relay []byte, owner OwnerKey) bool {
	body, err := r.ownerBody(relay)
	if err != nil || len(r.Signature) != SignatureSize {
		return false
	}
	return identity.VerifyWith(ed25519.PublicKey(owner[:]), OwnerLabel, body, r.Signature)
}

// Custody bounds (docs/PROTOCOL.md §10.3).
const (
	// MaxCustody is the longest custody a relay may promise: a relay's TTL
	// is at most this (the signed prekeys' retention, DESIGN.md §3, counts
	// on it), and a receipt that promises more breaks the protocol
	// (CheckCustody).
	MaxCustody = 14 * 24 * time.Hour
	// CustodyTolerance is the difference between a relay's clock and a
	// depositor's that CheckCustody allows (DESIGN.md §7).
	CustodyTolerance = 5 * time.Minute
)

// ErrCustody is CheckCustody's error.
var ErrCustody = errors.New("protocol: custody receipt beyond the longest custody a relay may promise")

// Receipt is a relay's custody receipt for one deposit: the relay, whose
// libp2p key signs it, holds the envelope until StoredUntil. A sender
// assembles it from its deposit and the RelayDeposit response.
type Receipt struct {
	// Relay is the relay's peer ID. Receipts are verifiable for relays with
	// an Ed25519 key, which sealpost relays have.
	Relay []byte
	// Mailbox is the mailbox deposited into.
	Mailbox MailboxID
	// Envelope is EnvelopeHash of the envelope deposited.
	Envelope [32]byte
	// StoredUntil is the end of the relay's custody, Unix milliseconds.
	StoredUntil int64
	// Signature is the relay's signature (RelayResponse.Signature).
	Signature []byte
}

// SignedMessage returns what the relay's key signs for r (docs/PROTOCOL.md
// §10.3):
//
//	"sealpost/v1/relay-receipt" || 0x00 || len8(relay) || relay || mailbox ID (32) ||
//	envelope hash (32) || stored_until (8, big-endian ms)
//
// A relay signs it with its libp2p private key (for an Ed25519 key that is
// plain Ed25519 over these bytes).
func (r *Receipt) SignedMessage() ([]byte, error) {
	if err := checkPeerID(r.Relay, "receipt: relay"); err != nil {
		return nil, err
	}
	if err := checkTime(r.StoredUntil, "receipt: stored_until"); err != nil {
		return nil, err
	}
	m := make([]byte, 0, len(ReceiptLabel)+1+1+len(r.Relay)+32+32+8)
	m = append(m, ReceiptLabel...)
	m = append(m, 0, byte(len(r.Relay)))
	m = append(m, r.Relay...)
	m = append(m, r.Mailbox[:]...)
	m = append(m, r.Envelope[:]...)
	return binary.BigEndian.AppendUint64(m, uint64(r.StoredUntil)), nil
}

// CheckCustody returns the end of the custody r promises as a depositor
// whose clock reads now may count on it: r.StoredUntil, cut to now plus
// MaxCustody. A StoredUntil later than that by more than CustodyTolerance
// is ErrCustody: the relay would have the sender wait past any custody it
// may give before depositing again, and hold the message where nothing
// shows whether it ever arrives (a black hole). The signature is Verify's
// business.
func (r *Receipt) CheckCustody(now time.Time) (time.Time, error) {
	until := time.UnixMilli(r.StoredUntil)
	limit := now.Add(MaxCustody)
	if until.After(limit.Add(CustodyTolerance)) {
		return time.Time{}, fmt.Errorf("%w: stored until %s, %s from now", ErrCustody,
			until.UTC().Format(time.RFC3339), until.Sub(now).Round(time.Minute))
	}
	if until.After(limit) {
		until = limit
	}
	return until, nil
}

// Verify checks r.Signature against the Ed25519 key inlined in r.Relay. It
// returns ErrBadSignature if the signature does not verify, and
// ErrMalformed for a relay whose peer ID is not an Ed25519 key.
func (r *Receipt) Verify() error {
	key, ok := Ed25519FromPeerID(r.Relay)
	if !ok {
		return fmt.Errorf("%w: receipt: relay peer ID is not an Ed25519 key", ErrMalformed)
	}
	m, err := r.SignedMessage()
	if err != nil {
		return err
	}
	body := m[len(ReceiptLabel)+1:]
	if len(r.Signature) != SignatureSize || !identity.VerifyWith(key, ReceiptLabel, body, r.Signature) {
		return fmt.Errorf("%w: custody receipt", ErrBadSignature)
	}
	return nil
}
