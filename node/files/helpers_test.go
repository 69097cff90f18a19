package files_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	mrand "math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
	"github.com/sealpost/sealpost/store/blobfs"
)

// Test worlds: real libp2p hosts on 127.0.0.1, real badger stores in
// temporary directories, a real relay blob service. Messaging is a double
// (messenger below) that hands a pointer from one node's service to the
// other's store, as messaging does when it delivers the message.

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newStore(t testing.TB, dir string) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := badgerstore.Open(ctx, dir, badgerstore.Options{GCInterval: -1})
	if errors.Is(err, store.ErrNotFound) || err != nil {
		st, err = badgerstore.Create(ctx, dir, badgerstore.ModeUnencrypted, badgerstore.Options{GCInterval: -1})
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// trelay is a relay: a host, a store with one mailbox and a token for it,
// and the blob service.
type trelay struct {
	t       testing.TB
	h       host.Host
	dir     string
	st      store.Store
	srv     *blobrelay.Server
	reg     *prometheus.Registry
	res     blobrelay.Resources
	mailbox protocol.MailboxID
	token   []byte
}

func newRelay(t testing.TB, res blobrelay.Resources) *trelay {
	t.Helper()
	r := &trelay{t: t, h: newHost(t), dir: t.TempDir(), res: res, token: bytes.Repeat([]byte{7}, 16)}
	r.mailbox[0], r.mailbox[31] = 1, 2
	r.st = newStore(t, filepath.Join(r.dir, "store"))
	err := r.st.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.Relay().CreateMailbox(store.RelayMailbox{ID: r.mailbox, CreatedAt: time.Now()}); err != nil {
			return err
		}
		_, _, err := tx.Relay().PutToken(r.mailbox, store.RelayToken{Hash: protocol.HashToken(r.token), CreatedAt: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.close)
	return r
}

func (r *trelay) start() {
	r.t.Helper()
	blobs, err := blobfs.Open(filepath.Join(r.dir, "blobs"))
	if err != nil {
		r.t.Fatal(err)
	}
	if r.st == nil {
		r.st = newStore(r.t, filepath.Join(r.dir, "store"))
	}
	r.reg = prometheus.NewRegistry()
	r.srv, err = blobrelay.New(blobrelay.Config{Host: r.h, Store: r.st, Blobs: blobs, Resources: r.res, Registerer: r.reg})
	if err != nil {
		r.t.Fatal(err)
	}
}

// stop closes the service and the store (the host stays: its peer ID and
// address are the relay's).
func (r *trelay) stop() {
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
}

func (r *trelay) close() {
	r.stop()
	r.h.Close()
}

func (r *trelay) box() protocol.Mailbox {
	var addrs [][]byte
	for _, a := range r.h.Addrs() {
		addrs = append(addrs, a.Bytes())
	}
	return protocol.Mailbox{Relay: []byte(r.h.ID()), RelayAddrs: addrs, ID: r.mailbox, Token: r.token}
}

// counter reads a counter of the relay's registry.
func (r *trelay) counter(name string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if c := m.GetCounter(); c != nil {
					total += c.GetValue()
				}
				if g := m.GetGauge(); g != nil {
					total += g.GetValue()
				}
			}
		}
	}
	return total
}

func (r *trelay) totals() store.RelayBlobTotals {
	var t store.RelayBlobTotals
	st := r.st
	if err := st.View(context.Background(), func(tx *store.Tx) error {
		var err error
		t, err = tx.RelayBlobs().Totals()
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return t
}

// dialer opens blob streams to relays from a host of its own, as
// node/mailbox's client hosts do.
type dialer struct{ h host.Host }

func (d *dialer) BlobStream(ctx context.Context, relay peer.ID, addrs []ma.Multiaddr, _ bool, _ protocol.MailboxID) (network.Stream, error) {
	d.h.Peerstore().AddAddrs(relay, addrs, peerstore.TempAddrTTL)
	return d.h.NewStream(ctx, relay, libp2pproto.ID(protocol.BlobProtocol))
}

// tnode is a personal node's file service.
type tnode struct {
	t    testing.TB
	name string
	uid  identity.UserID
	h    host.Host
	dir  string
	st   store.Store
	svc  *files.Service
	msg  *messenger
	dial *dialer
	opt  files.Options

	evMu   sync.Mutex
	events []string
}

func newNode(t testing.TB, name string, opt files.Options) *tnode {
	t.Helper()
	n := &tnode{t: t, name: name, h: newHost(t), dir: t.TempDir(), opt: opt}
	n.uid[0] = name[0]
	dh, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	n.dial = &dialer{h: dh}
	n.msg = &messenger{from: n}
	n.start()
	t.Cleanup(func() {
		n.stop()
		n.h.Close()
		dh.Close()
	})
	return n
}

func (n *tnode) start() {
	n.t.Helper()
	n.st = newStore(n.t, filepath.Join(n.dir, "store"))
	svc, err := files.New(files.Config{
		Host: n.h, Store: n.st, Dir: filepath.Join(n.dir, "files"), Messenger: n.msg, Relays: n.dial,
		Options: n.opt,
		Publish: func(typ string, data any) {
			n.evMu.Lock()
			n.events = append(n.events, typ)
			n.evMu.Unlock()
		},
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.svc = svc
	n.msg.deliverQueued()
}

func (n *tnode) stop() {
	if n.svc != nil {
		if err := n.svc.Close(); err != nil {
			n.t.Error(err)
		}
		n.svc = nil
	}
	if n.st != nil {
		n.st.Close()
		n.st = nil
	}
}

func (n *tnode) running() bool { return n.svc != nil }

// messenger is the messaging double: the recipient is another tnode, and
// a pointer goes to its store as messaging would record it, at once if it
// runs, when it starts otherwise.
type messenger struct {
	from *tnode
	mu   sync.Mutex
	to   *tnode
	// boxes are the recipient's relay mailboxes; offline makes its device
	// unreachable.
	boxes   []protocol.Mailbox
	offline bool
	// mutate, if set, changes each pointer before it is delivered (a
	// lying sender).
	mutate func(*protocol.File)
	queue  []delivery
	sent   map[protocol.MessageID]int
}

type delivery struct {
	id  protocol.MessageID
	ptr *protocol.File
	to  *tnode
}

func (m *messenger) Recipient(_ context.Context, name string) (files.Recipient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.to == nil || (name != m.to.name && name != m.to.uid.String()) {
		return files.Recipient{}, errors.New("unknown contact")
	}
	r := files.Recipient{UserID: m.to.uid, Device: m.to.h.ID(), Mailboxes: m.boxes}
	if !m.offline {
		r.Addrs = m.to.h.Addrs()
	} else {
		var fake peer.ID = "offline device"
		r.Device = fake
	}
	return r, nil
}

func (m *messenger) SendFile(ctx context.Context, to identity.UserID, id protocol.MessageID, caption string, f *protocol.File) error {
	m.mu.Lock()
	if m.sent == nil {
		m.sent = map[protocol.MessageID]int{}
	}
	m.sent[id]++
	first := m.sent[id] == 1
	if m.mutate != nil {
		c := *f
		c.Blobs = append([]attachment.Hash(nil), f.Blobs...)
		m.mutate(&c)
		f = &c
	}
	d := delivery{id: id, ptr: f, to: m.to}
	m.mu.Unlock()
	if !first {
		return nil
	}
	// The message record, as messaging commits it with the pointer.
	err := m.from.st.Update(ctx, func(tx *store.Tx) error {
		return tx.Messages().Put(&store.Message{ID: id, Peer: to, Outgoing: true, Seq: 1,
			Kind: uint8(protocol.KindFile), Body: []byte(caption), SentAt: time.Now(), ReceivedAt: time.Now(), State: store.MessageSent})
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.queue = append(m.queue, d)
	m.mu.Unlock()
	m.deliverQueued()
	return nil
}

// deliverQueued records the queued pointers in the recipient's store, if
// it runs.
func (m *messenger) deliverQueued() {
	m.mu.Lock()
	defer m.mu.Unlock()
	var left []delivery
	for _, d := range m.queue {
		if d.to == nil || !d.to.running() {
			left = append(left, d)
			continue
		}
		err := d.to.st.Update(context.Background(), func(tx *store.Tx) error {
			return files.Received(tx, d.id, m.from.uid, d.ptr, time.Now(), true)
		})
		if err != nil {
			m.from.t.Error(err)
		}
		d.to.svc.Wake()
	}
	m.queue = left
}

// connect makes a the sender to b.
func connect(a, b *tnode, r *trelay) {
	a.msg.mu.Lock()
	a.msg.to = b
	if r != nil {
		a.msg.boxes = []protocol.Mailbox{r.box()}
	}
	a.msg.mu.Unlock()
	b.msg.mu.Lock()
	b.msg.to = a
	b.msg.mu.Unlock()
}

// b's queue delivers into b once b starts: wire b's start to a's queue.
func (n *tnode) restart() {
	n.stop()
	n.start()
	if n.msg.to != nil {
		n.msg.to.msg.deliverQueued()
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func send(t testing.TB, n *tnode, to string, content []byte, name string) files.Info {
	t.Helper()
	info, err := n.svc.Send(context.Background(), files.SendRequest{To: to, Body: bytes.NewReader(content),
		Size: int64(len(content)), Meta: files.FileMeta{Name: name}, Caption: "a caption"})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitState waits until file id shows state at node n.
func waitState(t testing.TB, n *tnode, id, state string, within time.Duration) files.Info {
	t.Helper()
	deadline := time.Now().Add(within)
	var info files.Info
	for time.Now().Before(deadline) {
		var err error
		info, err = n.svc.Get(context.Background(), id)
		if err == nil && info.State == state {
			return info
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: file %s is %s (%s), want %s", n.name, id, info.State, info.Error, state)
	return info
}

// content reads a saved file's content.
func content(t testing.TB, n *tnode, id string) []byte {
	t.Helper()
	c, err := n.svc.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(b) != c.Digest {
		t.Fatal("content does not match its digest")
	}
	return b
}
