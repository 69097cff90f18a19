package messaging_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// withFiles gives the node a data directory: the attachment service runs
// (and, on a relay, the blob service).
func withFiles(t testing.TB, relay bool) peerOpt {
	dir := t.TempDir()
	return withConfig(func(c *node.Config) {
		c.DataDir = dir
		c.RelayService = c.RelayService || relay
	})
}

func randomFile(n int, seed byte) []byte {
	b := make([]byte, n)
	mrand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// sendFile sends content as name with caption and returns the file's
// (its message's) ID.
func sendFile(t testing.TB, from *tnode, to string, content []byte, name, caption string) string {
	t.Helper()
	info, err := from.n.Files().Send(nodetest.Context(t), files.SendRequest{To: to, Body: bytes.NewReader(content),
		Size: int64(len(content)), Meta: files.FileMeta{Name: name}, Caption: caption})
	if err != nil {
		t.Fatalf("%s: send a file: %v", from.name, err)
	}
	return info.ID
}

// fileMessage returns p's message id, with its file.
func fileMessage(t testing.TB, p *tnode, peer, id string) messaging.Message {
	t.Helper()
	msgs, err := p.m.Messages(nodetest.Context(t), peer, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("%s: no message %s with %s", p.name, id, peer)
	return messaging.Message{}
}

// checkContent checks that p's file id holds want.
func checkContent(t testing.TB, p *tnode, id string, want []byte) {
	t.Helper()
	c, err := p.n.Files().Open(nodetest.Context(t), id)
	if err != nil {
		t.Fatalf("%s: open file: %v", p.name, err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: file content differs (%d bytes, want %d)", p.name, len(got), len(want))
	}
}

// TestFileMessage: a file goes as a message of kind file: the recipient's
// inbox shows it with its caption and attachment, which downloads
// directly from the sender and is saved; the sender's message and file
// are delivered. A second copy of the same pointer queues nothing.
func TestFileMessage(t *testing.T) {
	s := newPeer(t, "sam", withFiles(t, false))
	r := newPeer(t, "rita", withFiles(t, false))
	befriend(t, s, r)
	content := randomFile(3<<20+17, 1)
	id := sendFile(t, s, "rita", content, "holiday.jpg", "look")

	var got messaging.Message
	nodetest.WaitFor(t, 30*time.Second, "the file saved", func() bool {
		for _, m := range inbox(t, r) {
			if m.ID == id {
				got = m
			}
		}
		return got.File != nil && got.File.State == "saved"
	})
	if got.Text != "look" || got.File.Name != "holiday.jpg" || got.File.Size != int64(len(content)) || got.File.MIME != "image/jpeg" || got.File.ID != id {
		t.Errorf("received %+v, file %+v", got, *got.File)
	}
	checkContent(t, r, id, content)
	mid, err := messaging.ParseMessageID(id)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, s, mid, messaging.StateDelivered)
	if m := fileMessage(t, s, "rita", id); m.File == nil || m.File.State != "delivered" || m.Text != "look" {
		t.Errorf("sender's message: %+v", m)
	}
	// The same pointer again (a file service that restarted) changes
	// nothing.
	f, err := s.n.Files().Get(nodetest.Context(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if f.State != "delivered" {
		t.Errorf("sender's file is %s", f.State)
	}
	before := len(inbox(t, r))
	rec, err := s.m.FileRecipient(nodetest.Context(t), "rita")
	if err != nil {
		t.Fatal(err)
	}
	if rec.UserID.String() != r.n.Info().UserID {
		t.Errorf("FileRecipient: %+v", rec)
	}
	send(t, s, "rita", "after")
	nodetest.WaitFor(t, 10*time.Second, "the text after", func() bool { return len(inbox(t, r)) == before+1 })
}

// TestFileOffline: the recipient is offline; the blobs go to its relay
// (a node running the relay and blob services), the pointer follows
// through the mailbox; the recipient comes back, downloads the file from
// the relay, and acknowledges it, which empties the relay.
func TestFileOffline(t *testing.T) {
	rl, s, r := offlineRecipient(t, withFiles(t, false))

	content := randomFile(2<<20+5, 2)
	id := sendFile(t, s, "rita", content, "notes.txt", "")
	// The blobs go to the relay first, then the pointer.
	nodetest.WaitFor(t, 60*time.Second, "the pointer queued", func() bool {
		f, err := s.n.Files().Get(nodetest.Context(t), id)
		return err == nil && f.State != "queued"
	})
	mid, _ := messaging.ParseMessageID(id)
	wait(t, s, mid, messaging.StateSent)
	if tot, err := rl.n.Blobs().Totals(nodetest.Context(t)); err != nil || tot.Bytes == 0 {
		t.Fatalf("the relay holds %+v, %v", tot, err)
	}

	r.restart()
	nodetest.WaitFor(t, 60*time.Second, "the file saved", func() bool {
		f, err := r.n.Files().Get(nodetest.Context(t), id)
		return err == nil && f.State == "saved"
	})
	checkContent(t, r, id, content)
	wait(t, s, mid, messaging.StateDelivered)
	nodetest.WaitFor(t, 20*time.Second, "the relay emptied", func() bool {
		tot, err := rl.n.Blobs().Totals(nodetest.Context(t))
		return err == nil && tot.Bytes == 0
	})
}

// offlineRecipient starts a relay, sam (with samOpt) and rita, who keeps
// a mailbox on the relay; sam and rita become contacts, and rita stops
// once her node registered sam's deposit token at the relay. (Her node
// gives sam its card and registers the token independently: a file sent
// before the token is there waits for her, TestFileTokenLate.)
func offlineRecipient(t *testing.T, samOpt peerOpt) (rl, s, r *tnode) {
	t.Helper()
	rl = newPeer(t, "relay", withFiles(t, true))
	s = newPeer(t, "sam", samOpt)
	r = newPeer(t, "rita", onDisk(), withFiles(t, false))
	if _, err := r.m.AddRelay(nodetest.Context(t), rl.n.Info().Addrs[0]); err != nil {
		t.Fatalf("AddRelay: %v", err)
	}
	befriend(t, s, r)
	send(t, s, "rita", "hello")
	nodetest.WaitFor(t, 20*time.Second, "rita has sam's card", func() bool { return len(inbox(t, r)) == 1 })
	nodetest.WaitFor(t, 20*time.Second, "rita's tokens registered", func() bool { return tokensRegistered(t, r) })
	r.stop()
	return rl, s, r
}

// tokensRegistered reports whether every deposit token p's node gave is
// registered at its relay.
func tokensRegistered(t testing.TB, p *tnode) bool {
	t.Helper()
	all := true
	err := p.st.View(nodetest.Context(t), func(tx *store.Tx) error {
		toks, err := tx.DepositTokens().List()
		for _, tok := range toks {
			all = all && (tok.Registered || tok.Revoked)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestFileTokenLate: rita's node gave sam its card and went offline
// before registering sam's deposit token at her relay. The relay refuses
// sam's upload with token_refused; the file is retried, and arrives once
// rita is back (her node registers the token, the upload goes, the
// pointer follows).
func TestFileTokenLate(t *testing.T) {
	sdir := t.TempDir()
	rl, s, r := offlineRecipient(t, withConfig(func(c *node.Config) {
		c.DataDir = sdir
		c.Files.RetryMin, c.Files.RetryMax = 200*time.Millisecond, 2*time.Second
	}))

	// Undo the registration on both sides: the relay does not know the
	// token, and rita's node has it to register.
	ctx := context.Background()
	st, err := badgerstore.Open(ctx, r.dir, badgerstore.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var hashes []protocol.TokenHash
	var box protocol.MailboxID
	err = st.Update(ctx, func(tx *store.Tx) error {
		toks, err := tx.DepositTokens().List()
		for _, tok := range toks {
			if tok.Contact.IsZero() || tok.Revoked {
				continue
			}
			hashes = append(hashes, protocol.HashToken(tok.Token[:]))
			box = tok.Mailbox
			tok.Registered = false
			if err := tx.DepositTokens().Put(tok); err != nil {
				return err
			}
		}
		return err
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil || len(hashes) == 0 {
		t.Fatalf("rita's contact tokens: %d, %v", len(hashes), err)
	}
	err = rl.st.Update(ctx, func(tx *store.Tx) error {
		for _, h := range hashes {
			if err := tx.Relay().DeleteToken(box, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	content := randomFile(1<<20+3, 3)
	id := sendFile(t, s, "rita", content, "late.txt", "")
	nodetest.WaitFor(t, 30*time.Second, "the relay refused the upload", func() bool {
		f, err := s.n.Files().Get(nodetest.Context(t), id)
		return err == nil && strings.Contains(f.Error, "deposit token refused")
	})
	r.restart()
	nodetest.WaitFor(t, 60*time.Second, "the file saved", func() bool {
		f, err := r.n.Files().Get(nodetest.Context(t), id)
		return err == nil && f.State == "saved"
	})
	checkContent(t, r, id, content)
	mid, _ := messaging.ParseMessageID(id)
	wait(t, s, mid, messaging.StateDelivered)
}
