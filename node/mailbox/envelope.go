package mailbox

import (
	"crypto/ecdh"
	"fmt"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/seal"
	"github.com/sealpost/sealpost/protocol"
)

// The envelope format, both ways: a deposit seals each payload to the
// recipient's mailbox (crypto/seal: the mailbox ID in clear, the sender's
// identity, its device and the payload encrypted to the mailbox's sealing
// key); the owner's receive loop opens what its relay pushes with the
// mailbox's sealing private key. The sender and device are claims until
// the session that decrypts the payload confirms them.

// seal seals each payload to mailbox b from sender and its device.
func (c *Client) seal(b *protocol.Mailbox, sender *identity.Public, device []byte, payloads [][]byte) ([][]byte, error) {
	envs := make([][]byte, len(payloads))
	for i, p := range payloads {
		env, err := seal.Seal(nil, b.ID, b.SealingKey[:], sender, device, p, c.cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("mailbox: seal: %w", err)
		}
		envs[i] = env
	}
	return envs, nil
}

// open opens envelope seq of own mailbox id with its sealing key; false
// if it does not open or was sealed to another mailbox.
func open(id protocol.MailboxID, sealing *ecdh.PrivateKey, seq uint64, envelope []byte) (Delivery, bool) {
	o, err := seal.Open(envelope, sealing)
	if err != nil || o.Mailbox != id {
		return Delivery{}, false
	}
	pub, _ := o.Sender.MarshalBinary()
	return Delivery{Mailbox: id, Seq: seq, Sender: pub, Device: o.Device, Payload: o.Payload}, true
}
