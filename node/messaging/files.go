package messaging

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// File messages: the attachment service (node/files) encrypts a file,
// records it under a new message ID, and hands its pointer here; the
// pointer then travels as an ordinary message of kind file, with the
// file's caption as its text, through the outbox like a text (direct,
// relayed or deposited, with states and receipts). Its record keeps the
// caption; the pointer stays in the file's record (store.Files), where
// re-encryption finds it.

// FileRecipient is a contact a file may go to: its device, the device's
// known addresses, and the relay mailboxes its card lists (with the
// deposit token this node holds for each), which the file's blobs may be
// uploaded to.
type FileRecipient struct {
	UserID    identity.UserID
	Device    peer.ID
	Addrs     []ma.Multiaddr
	Mailboxes []protocol.Mailbox
}

// FileRecipient resolves the contact nameOrUserID for a file, with Send's
// refusals (ErrUnknownContact, ErrUntrustedIdentity, ErrNotAccepted).
func (s *Service) FileRecipient(ctx context.Context, nameOrUserID string) (FileRecipient, error) {
	var out FileRecipient
	err := s.st.View(ctx, func(tx *store.Tx) error {
		w := newWork(s, tx, s.clock.Now())
		c, err := w.lookup(nameOrUserID)
		if err != nil {
			return err
		}
		if err := sendable(c); err != nil {
			return err
		}
		out.UserID = c.c.UserID
		if len(c.c.Device) > 0 {
			if out.Device, err = peer.IDFromBytes(c.c.Device); err != nil {
				return fmt.Errorf("messaging: contact device: %w", err)
			}
		}
		for _, b := range c.c.Addrs {
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				out.Addrs = append(out.Addrs, a)
			}
		}
		out.Mailboxes = contactBoxes(&c.c)
		return nil
	})
	return out, err
}

// sendable refuses a contact this node may not send to.
func sendable(c *contactEntry) error {
	if c.c.IdentityChanged {
		return fmt.Errorf("%w: %s", ErrUntrustedIdentity, c.c.Name)
	}
	if c.c.State != store.ContactAccepted {
		return fmt.Errorf("%w: %s", ErrNotAccepted, c.c.Name)
	}
	return nil
}

// SendFile queues the file message id to the contact to: the pointer f
// with caption (at most protocol.MaxCaption bytes of UTF-8). The ID is
// the file's (node/files chose it); queuing an ID that is queued or sent
// already is a success that queues nothing, so a file service that
// restarts may hand the same pointer again. Refusals as Send's.
func (s *Service) SendFile(ctx context.Context, to identity.UserID, id protocol.MessageID, caption string, f *protocol.File) error {
	if len(caption) > protocol.MaxCaption || !utf8.ValidString(caption) {
		return fmt.Errorf("%w: a caption of %d bytes, limit %d", ErrTooLong, len(caption), protocol.MaxCaption)
	}
	if id.IsZero() || f == nil {
		return errors.New("messaging: SendFile without an ID or a pointer")
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("messaging: pointer: %w", err)
	}
	size := len(caption) + 64*len(f.Blobs) + len(f.Thumbnail) + 1024
	_, err := s.queueNew(ctx, to.String(), jobWeight(1, size), func(w *work) (bool, error) {
		if _, err := w.tx.Messages().Get(id); err == nil {
			return false, nil
		} else if !isNotFound(err) {
			return false, err
		}
		return true, nil
	}, outgoing{kind: kindFile, id: id, text: caption, file: f})
	return err
}

// queueNew queues o to the contact nameOrUserID as a new message (with
// Send's refusals), first making a session from the contact's bundle if
// none can send. want, if not nil, runs in the transaction first and may
// skip the message (false). It returns the message's ID.
func (s *Service) queueNew(ctx context.Context, nameOrUserID string, weight int, want func(w *work) (bool, error), o outgoing) (protocol.MessageID, error) {
	for attempt := 0; ; attempt++ {
		var (
			id  protocol.MessageID
			uid identity.UserID
		)
		j, err := s.submit(ctx, false, weight, func(w *work) error {
			id = protocol.MessageID{}
			c, err := w.lookup(nameOrUserID)
			if err != nil {
				return refuse(err)
			}
			if err := sendable(c); err != nil && !(o.toRequest && errors.Is(err, ErrNotAccepted)) {
				return refuse(err)
			}
			uid = c.c.UserID
			if want != nil {
				ok, err := want(w)
				if err != nil || !ok {
					id = o.id
					return err
				}
			}
			id, err = w.queue(c, o)
			if errors.Is(err, errNoSession) {
				return refuse(err)
			}
			return err
		})
		if err == nil {
			err = s.await(j)
		}
		if errors.Is(err, errNoSession) && attempt == 0 {
			if err := s.establish(ctx, uid, false); err != nil {
				return protocol.MessageID{}, err
			}
			continue
		}
		if err != nil {
			return protocol.MessageID{}, err
		}
		return id, nil
	}
}
