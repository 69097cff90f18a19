package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/blobfs"
)

// Attachments join two services that each need the other: messaging
// carries the pointers the file service makes (fileMessenger), and hands
// the pointers it receives back to it (fileSink). Messaging starts first;
// the file service, started next, finds in the store whatever pointer
// arrived in between.

// fileSink records received pointers for the file service (its Received
// is a function of the store) and wakes the service once it runs.
type fileSink struct {
	svc atomic.Pointer[files.Service]
	dir string // the file service's directory (Config.DataDir/FilesDir)
}

func (s *fileSink) Received(tx *store.Tx, id protocol.MessageID, from identity.UserID, f *protocol.File, now time.Time, auto bool) error {
	return files.Received(tx, id, from, f, now, auto)
}

func (s *fileSink) ReceivedGroup(tx *store.Tx, id protocol.MessageID, group protocol.GroupID, from identity.UserID, f *protocol.File, now time.Time) error {
	return files.ReceivedGroup(tx, id, group, from, f, now)
}

func (s *fileSink) Delete(tx *store.Tx, id protocol.MessageID) (func(), error) {
	return files.Delete(tx, s.dir, id)
}

func (s *fileSink) Wake() {
	if svc := s.svc.Load(); svc != nil {
		svc.Wake()
	}
}

// fileMessenger is messaging as the file service sees it.
type fileMessenger struct{ msg *messaging.Service }

func (m fileMessenger) Recipient(ctx context.Context, nameOrUserID string) (files.Recipient, error) {
	r, err := m.msg.FileRecipient(ctx, nameOrUserID)
	return files.Recipient(r), err
}

func (m fileMessenger) SendFile(ctx context.Context, to identity.UserID, id protocol.MessageID, caption string, f *protocol.File) error {
	return m.msg.SendFile(ctx, to, id, caption, f)
}

// fileGroups is the group engine as the file service sees it; the engine
// starts after the file service, so it is looked up at each call.
type fileGroups struct{ slot *groupSlot }

var errNoGroups = errors.New("node: the group engine is not running")

func (g fileGroups) GroupTarget(ctx context.Context, ref string) (files.GroupTarget, error) {
	svc := g.slot.svc.Load()
	if svc == nil {
		return files.GroupTarget{}, errNoGroups
	}
	t, err := svc.FileTarget(ctx, ref)
	return files.GroupTarget(t), err
}

func (g fileGroups) SendGroupFile(ctx context.Context, group protocol.GroupID, id protocol.MessageID, caption string, f *protocol.File) error {
	svc := g.slot.svc.Load()
	if svc == nil {
		return errNoGroups
	}
	return svc.SendFile(ctx, group, id, caption, f)
}

// Files returns the node's attachment service (package node/files), or
// nil when Config.DataDir is empty.
func (n *Node) Files() *files.Service { return n.files }

// Blobs returns the relay's attachment blob service (package
// node/blobrelay), or nil unless Config.RelayService is on and
// Config.DataDir is set.
func (n *Node) Blobs() *blobrelay.Server { return n.blobs }

// Directories under Config.DataDir.
const (
	// FilesDir holds the ciphertexts of the node's files.
	FilesDir = "files"
	// BlobsDir holds the blobs the relay keeps for others.
	BlobsDir = "blobs"
)

// startBlobs starts the relay's blob service.
func (n *Node) startBlobs() error {
	dir, err := blobfs.Open(filepath.Join(n.cfg.DataDir, BlobsDir))
	if err != nil {
		return fmt.Errorf("node: relay blobs: %w", err)
	}
	n.blobs, err = blobrelay.New(blobrelay.Config{
		Host:       n.host,
		Store:      n.cfg.Store,
		Blobs:      dir,
		Resources:  n.cfg.Blobs,
		Logger:     n.log,
		Clock:      n.clock,
		Registerer: n.cfg.Registry,
		// Blob uploads refused for a creator quota count with the
		// relay's own.
		QuotaRefused: n.relay.QuotaRefused,
	})
	if err != nil {
		return fmt.Errorf("node: relay blobs: %w", err)
	}
	n.closers.PushFunc(closeService(n.blobs))
	return nil
}
