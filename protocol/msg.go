package protocol

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// Ciphertext is one encrypted message as its sender commits it to the
// outbox: encrypted once, sent as the same bytes on every retry and every
// path (direct in a Deliver, or as the payload of a sealed envelope).
type Ciphertext struct {
	// Prekey is the crypto/pqxdh initial message. A sender attaches it to
	// every message of a new session until it has decrypted the peer's
	// first reply (the session is then confirmed); nil after that.
	Prekey []byte
	// Ratchet is the crypto/ratchet message. Required.
	Ratchet []byte
}

// Validate checks c's fields against their limits.
func (c *Ciphertext) Validate() error {
	if err := checkBytes(c.Prekey, 0, MaxPrekeyMessage, "ciphertext: prekey message"); err != nil {
		return err
	}
	return checkBytes(c.Ratchet, 1, MaxRatchetMessage, "ciphertext: ratchet message")
}

// Marshal returns the canonical encoding of c.
func (c *Ciphertext) Marshal() ([]byte, error) { return encode(nil, c) }

// Unmarshal decodes and validates b into c.
func (c *Ciphertext) Unmarshal(b []byte) error {
	var p pb.Ciphertext
	if err := decode(b, c.limit(), c.kind(), &p); err != nil {
		return err
	}
	v := Ciphertext{Prekey: p.Prekey, Ratchet: p.Ratchet}
	if err := v.Validate(); err != nil {
		return err
	}
	*c = v
	return nil
}

func (c *Ciphertext) wire() proto.Message {
	return &pb.Ciphertext{Version: Version, Prekey: c.Prekey, Ratchet: c.Ratchet}
}

func (c *Ciphertext) limit() int   { return MaxCiphertext }
func (c *Ciphertext) kind() string { return "ciphertext" }

// SeenKey is the receiver's seen-set key for c: crypto/ratchet's
// MessageHash of the ratchet message (docs/PROTOCOL.md §6.5). It is the same
// for the direct copy and every relayed copy, and also for a copy whose
// prekey field was stripped or altered on the way, which must count as seen
// too; so it covers the ratchet message, not the whole Ciphertext.
func (c *Ciphertext) SeenKey() [32]byte { return ratchet.MessageHash(c.Ratchet) }

// Deliver carries one Ciphertext on MsgProtocol.
type Deliver struct {
	// ID numbers the Deliver on its stream, from 1, so that the Ack can
	// name it. It is not stored and means nothing on another stream.
	ID uint64
	// Identity is the sender's public identity (crypto/identity encoding).
	Identity []byte
	// Device is the sender's device peer ID. The receiver refuses the
	// Deliver (CodeWrongSender) unless it is the stream's remote peer.
	Device []byte
	// Ciphertext is an encoded Ciphertext, the bytes the sender committed
	// to its outbox; Validate decodes it.
	Ciphertext []byte
}

// Validate checks d's fields, including that Ciphertext decodes.
func (d *Deliver) Validate() error {
	if d.ID == 0 {
		return fmt.Errorf("%w: deliver: id missing", ErrMalformed)
	}
	if err := checkBytes(d.Identity, 1, MaxIdentity, "deliver: identity"); err != nil {
		return err
	}
	if err := checkPeerID(d.Device, "deliver: device"); err != nil {
		return err
	}
	if len(d.Ciphertext) == 0 {
		return fmt.Errorf("%w: deliver: ciphertext missing", ErrMalformed)
	}
	var c Ciphertext
	if err := c.Unmarshal(d.Ciphertext); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	return nil
}

// Marshal returns the canonical encoding of d.
func (d *Deliver) Marshal() ([]byte, error) { return encode(nil, d) }

// Unmarshal decodes and validates b into d.
func (d *Deliver) Unmarshal(b []byte) error {
	var p pb.Deliver
	if err := decode(b, d.limit(), d.kind(), &p); err != nil {
		return err
	}
	v := Deliver{ID: p.Id, Identity: p.Identity, Device: p.Device, Ciphertext: p.Ciphertext}
	if err := v.Validate(); err != nil {
		return err
	}
	*d = v
	return nil
}

func (d *Deliver) wire() proto.Message {
	return &pb.Deliver{Version: Version, Id: d.ID, Identity: d.Identity, Device: d.Device, Ciphertext: d.Ciphertext}
}

func (d *Deliver) limit() int   { return MaxMsgFrame }
func (d *Deliver) kind() string { return "deliver" }

// Ack answers one Deliver on MsgProtocol. The receiver sends it only after
// the Ciphertext is committed (CodeOK), or found in its seen-set (CodeOK as
// well), or refused (another code). ID 0 names no Deliver: it reports a
// frame that did not decode (the stream is reset after it), and its code is
// never CodeOK.
type Ack struct {
	ID   uint64
	Code Code
}

// Committed reports whether the receiver holds the message: CodeOK, or
// CodeDuplicate from a peer that reports duplicates.
func (a *Ack) Committed() bool { return a.Code == CodeOK || a.Code == CodeDuplicate }

// Validate checks a's fields.
func (a *Ack) Validate() error {
	if err := a.Code.check(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if a.ID == 0 && a.Committed() {
		return fmt.Errorf("%w: ack: id missing", ErrMalformed)
	}
	return nil
}

// Marshal returns the canonical encoding of a.
func (a *Ack) Marshal() ([]byte, error) { return encode(nil, a) }

// Unmarshal decodes and validates b into a.
func (a *Ack) Unmarshal(b []byte) error {
	var p pb.Ack
	if err := decode(b, a.limit(), a.kind(), &p); err != nil {
		return err
	}
	v := Ack{ID: p.Id, Code: Code(p.Code)}
	if err := v.Validate(); err != nil {
		return err
	}
	*a = v
	return nil
}

func (a *Ack) wire() proto.Message {
	return &pb.Ack{Version: Version, Id: a.ID, Code: pb.Code(a.Code)}
}

func (a *Ack) limit() int   { return MaxMsgFrame }
func (a *Ack) kind() string { return "ack" }
