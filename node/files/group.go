package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Files sent to a group. The file is encrypted once and its pointer goes
// once, as a group message, to every member. Its blobs go once to each of
// the group's home relays, under the group's log there (charged to the
// log's blob quota, with the token of the group's current epoch), never
// into the members' mailboxes: the same blob in several mailboxes would
// tell a relay that those mailboxes are one group's. Members online fetch
// the blobs from the sender's device; the others from the home relays,
// where they stay until the relay's TTL (members' acknowledgements do not
// delete them: one member's cannot speak for the others).

// GroupTarget is a group a file may be sent to, as the group service
// knows it now.
type GroupTarget struct {
	ID protocol.GroupID
	// Homes are the group's home relays with its log on each.
	Homes []protocol.GroupHome
	// Epoch is the group's current epoch and Token that epoch's token
	// (which the home relays check an upload against).
	Epoch uint64
	Token protocol.GroupToken
}

// GroupMessenger is what the service needs of the group service.
type GroupMessenger interface {
	// GroupTarget resolves a group (by name or ID) a file may be sent to,
	// with the same refusals as sending a text (unknown group, not a
	// member, a member's identity changed).
	GroupTarget(ctx context.Context, ref string) (GroupTarget, error)
	// SendGroupFile queues the group message of kind file that carries f
	// (and caption) under the message ID id. Queuing the same ID again is
	// a success that queues nothing.
	SendGroupFile(ctx context.Context, group protocol.GroupID, id protocol.MessageID, caption string, f *protocol.File) error
}

// GroupSendRequest is a file to send to a group.
type GroupSendRequest struct {
	// Group is the group's name or ID.
	Group string
	// Body gives exactly Size bytes of content.
	Body io.Reader
	Size int64
	Meta FileMeta
	// Caption is the text sent with the file, at most protocol.MaxCaption
	// bytes of UTF-8.
	Caption string
	// Progress, if not nil, is called with the bytes read from Body.
	Progress func(n int64)
}

// SendGroup encrypts a file once for a group and sends it: its pointer
// goes to the group at once (members online fetch the blobs from this
// device), and its blobs go to the group's home relays for the members
// who are not (a relay-service node, which does not serve its files
// itself, sends the pointer once a home holds every blob). It returns
// once the file and its record are durable (state queued); the transfer
// continues in the background, across restarts.
func (s *Service) SendGroup(ctx context.Context, req GroupSendRequest) (Info, error) {
	if s.cfg.Groups == nil {
		return Info{}, errors.New("files: no group service")
	}
	if err := s.checkSend(req.Caption, req.Size); err != nil {
		return Info{}, err
	}
	target, err := s.cfg.Groups.GroupTarget(ctx, req.Group)
	if err != nil {
		return Info{}, err
	}
	return s.send(ctx, req.Body, req.Size, req.Meta, req.Progress, func(p *Prepared) (store.File, error) {
		return s.shareGroup(ctx, p, target, req.Caption)
	})
}

// shareGroup records the outgoing file p for group t: its pointer (this
// device and the group's home relays, each under its log, as sources) and
// its transfer state.
func (s *Service) shareGroup(ctx context.Context, p *Prepared, t GroupTarget, caption string) (store.File, error) {
	ptr := p.pointer()
	if !s.cfg.NoServe {
		ptr.Peer = &protocol.FilePeer{Peer: []byte(s.self), Addrs: s.ownAddrs()}
	}
	f := p.record(caption, s.clock.Now())
	f.Group = t.ID
	for _, h := range t.Homes {
		if len(ptr.Relays) >= min(protocol.MaxFileRelays, store.MaxFileRelays) {
			break
		}
		ptr.Relays = append(ptr.Relays, protocol.FileRelay{Relay: h.Relay, Addrs: h.Addrs, Log: h.Log})
		f.Relays = append(f.Relays, store.FileRelay{Relay: h.Relay, Log: h.Log})
	}
	if ptr.Peer == nil && len(ptr.Relays) == 0 {
		return f, fmt.Errorf("%w: the group has no home relay, and this node (a relay) does not serve files itself", ErrNoSource)
	}
	// The pointer goes at once when this device serves the blobs; the
	// homes get them at once too, for the members who are not online.
	f.Direct = ptr.Peer != nil
	return f, s.keep(ctx, &f, ptr)
}

// groupDests returns, per relay of the group file f, where its blobs go
// now: the home's addresses, its log and the group's current epoch and
// token (nil for a relay that is no longer one of the group's homes).
func (s *Service) groupDests(ctx context.Context, f *store.File) ([]*uploadDest, error) {
	t, err := s.cfg.Groups.GroupTarget(ctx, f.Group.String())
	if err != nil {
		return nil, fmt.Errorf("files: the group: %w", err)
	}
	out := make([]*uploadDest, len(f.Relays))
	for i, r := range f.Relays {
		for _, h := range t.Homes {
			if string(h.Relay) == string(r.Relay) && h.Log == r.Log {
				tok := t.Token
				out[i] = &uploadDest{addrs: h.Addrs, log: h.Log, epoch: t.Epoch, token: tok[:]}
			}
		}
	}
	return out, nil
}

// ReceivedGroup records the pointer f of group message id from member
// from, in the transaction that commits the message (the group service
// calls it): an incoming file, queued, which the engine downloads if it
// is small enough (Options.AutoDownload; after the commit, call Wake);
// otherwise it waits for Download. A pointer already recorded under id is
// left as it is.
func ReceivedGroup(tx *store.Tx, id protocol.MessageID, group protocol.GroupID, from identity.UserID, f *protocol.File, now time.Time) error {
	return received(tx, id, group, from, f, now, true)
}
