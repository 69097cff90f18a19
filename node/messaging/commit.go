package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/ratchet"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The writer: every change the service makes goes through a store.Batcher,
// which commits the jobs waiting at that moment in one store transaction.
// This is group commit at the service level: one fsync for a batch of
// sends, received frames and acknowledgements, and no transaction
// conflicts between the service's own writes (they would all touch the
// same contact, session and counters). Jobs read and change contacts and
// sessions through a write-back cache (work), so a batch writes each
// record once however many messages touched it.

// txFunc is a job's body. It runs inside the store transaction, possibly
// more than once (a backend may retry a conflicting transaction), so it
// keeps its results in variables it resets at its start. It returns only
// errors that must abort the transaction (store errors); a refusal of the
// job alone is returned as refuse(err), and then the job must not have
// changed anything.
type txFunc func(w *work) error

// refusal is a job's own error: it fails that job, not the batch.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// refuse wraps a job's own error.
func refuse(err error) error { return refusal{err} }

type job struct {
	fn        txFunc
	exclusive bool // committed alone (rare operations that change many records)
	weight    int  // see jobWeight
	done      chan struct{}
	err       error
	post      []func() // run after the commit, in the writer
}

// do runs fn in the writer and returns when its transaction is durable (or
// failed). exclusive jobs are committed in a transaction of their own.
func (s *Service) do(ctx context.Context, exclusive bool, fn txFunc) error {
	j, err := s.submit(ctx, exclusive, 1, fn)
	if err != nil {
		return err
	}
	return s.await(j)
}

// jobWeight is the weight of a job that handles n messages of size bytes
// in all: one per message and one per KiB. The writer commits jobs
// together up to a weight of 2·MaxBatch, which keeps a transaction well
// inside what badger commits at once (about 1.2 MiB with its default
// memtable); a heavier job goes alone.
func jobWeight(n, size int) int { return n + size>>10 }

// newWriter returns the Batcher of s's jobs, committed together up to a
// weight of 2·MaxBatch (1: each alone), one batch at a time.
func (s *Service) newWriter() *store.Batcher[*job] {
	maxWeight := 1
	if s.opt.MaxBatch > 1 {
		maxWeight = 2 * s.opt.MaxBatch
	}
	return store.NewBatcher(s.st, store.BatcherOptions[*job]{
		Weight:    func(j *job) (int, bool) { return j.weight, j.exclusive },
		MaxWeight: maxWeight,
		Queue:     4096,
		Run: func(tx *store.Tx, batch []*job) error {
			w := newWork(s, tx, s.clock.Now())
			for _, j := range batch {
				j.post, j.err = nil, nil
				w.job = j
				err := j.fn(w)
				var r refusal
				if errors.As(err, &r) {
					j.err = err
					continue
				}
				if err != nil {
					return err
				}
			}
			return w.flush()
		},
		Done: func(batch []*job, _ time.Duration, err error) {
			switch {
			case err == nil, errors.Is(err, store.ErrClosed):
			case errors.Is(err, store.ErrDiskFull):
				// The store said so once; each refusal is not news.
				s.log.Debug("messaging: store transaction refused", "err", err)
			default:
				s.log.Error("messaging: store transaction failed", "err", err)
			}
			if errors.Is(err, store.ErrClosed) {
				err = ErrClosed
			}
			for _, j := range batch {
				if err != nil {
					j.err = err
				} else {
					for _, f := range j.post {
						f()
					}
				}
				close(j.done)
			}
		},
	})
}

// submit queues a job of the given weight (jobWeight) for the writer.
func (s *Service) submit(ctx context.Context, exclusive bool, weight int, fn txFunc) (*job, error) {
	j := &job{fn: fn, exclusive: exclusive, weight: max(weight, 1), done: make(chan struct{})}
	err := s.w.Submit(ctx, j)
	if errors.Is(err, store.ErrClosed) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// await waits for a submitted job and returns its error.
func (s *Service) await(j *job) error {
	<-j.done
	var r refusal
	if errors.As(j.err, &r) {
		return r.err
	}
	return j.err
}

// work is one transaction's view of the store with a write-back cache of
// contacts and sessions.
type work struct {
	s   *Service
	tx  *store.Tx
	now time.Time
	job *job

	contacts map[identity.UserID]*contactEntry
	sessions map[sessKey]*sessEntry
	lists    map[devKey][]*sessEntry // every session with a device, once loaded
	allDev   bool                    // contacts fully loaded (for device lookups)
	seen     map[[32]byte]bool
	receipts map[identity.UserID][]protocol.MessageID
	rorder   []identity.UserID
	// rescheduled is set once an outbox entry got a later attempt (the
	// scheduler is poked after the commit).
	rescheduled bool
	// relayCache holds the own mailboxes and tokens once loaded (tokens.go).
	relayCache *relayState
	// via is the path of the ciphertext being received (Incoming.Via).
	via string
	// dropMsgs and dropReqs are what the caps on message requests dropped
	// in this transaction (requests.go).
	dropMsgs, dropReqs int
}

type contactEntry struct {
	c       store.Contact
	exists  bool // in the store or created in this transaction
	dirty   bool
	deleted bool
}

type sessKey struct {
	peer   identity.UserID
	device string
	id     store.SessionID
}

type devKey struct {
	peer   identity.UserID
	device string
}

type sessEntry struct {
	rec     store.Session
	st      *ratchet.State
	dirty   bool
	deleted bool
	fresh   bool // created by this transaction
}

func newWork(s *Service, tx *store.Tx, now time.Time) *work {
	return &work{
		s: s, tx: tx, now: now,
		contacts: map[identity.UserID]*contactEntry{},
		sessions: map[sessKey]*sessEntry{},
		lists:    map[devKey][]*sessEntry{},
		seen:     map[[32]byte]bool{},
		receipts: map[identity.UserID][]protocol.MessageID{},
	}
}

// after schedules f for after the commit.
func (w *work) after(f func()) { w.job.post = append(w.job.post, f) }

// contact returns the contact with user ID id, or nil if there is none.
// The returned pointer is the cached record: change it, then call
// w.dirty(e).
func (w *work) contact(id identity.UserID) (*contactEntry, error) {
	if e, ok := w.contacts[id]; ok {
		if !e.exists || e.deleted {
			return nil, nil
		}
		return e, nil
	}
	c, err := w.tx.Contacts().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		w.contacts[id] = &contactEntry{}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &contactEntry{c: c, exists: true}
	w.contacts[id] = e
	return e, nil
}

// addContact caches a new contact, to be written at the flush.
func (w *work) addContact(c store.Contact) *contactEntry {
	e := &contactEntry{c: c, exists: true, dirty: true}
	w.contacts[c.UserID] = e
	return e
}

// loadAllContacts fills the cache with every contact (for lookups by
// device and name).
func (w *work) loadAllContacts() error {
	if w.allDev {
		return nil
	}
	all, err := w.tx.Contacts().List()
	if err != nil {
		return err
	}
	for _, c := range all {
		if _, ok := w.contacts[c.UserID]; !ok {
			w.contacts[c.UserID] = &contactEntry{c: c, exists: true}
		}
	}
	w.allDev = true
	return nil
}

// contactByDevice returns the contact whose device is dev, or nil.
func (w *work) contactByDevice(dev []byte) (*contactEntry, error) {
	if err := w.loadAllContacts(); err != nil {
		return nil, err
	}
	for _, e := range w.sortedContacts() {
		if bytes.Equal(e.c.Device, dev) {
			return e, nil
		}
	}
	return nil, nil
}

// sortedContacts returns the cached live contacts in user ID order.
func (w *work) sortedContacts() []*contactEntry {
	out := make([]*contactEntry, 0, len(w.contacts))
	for _, e := range w.contacts {
		if e.exists && !e.deleted {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *contactEntry) int { return bytes.Compare(a.c.UserID[:], b.c.UserID[:]) })
	return out
}

// nameTaken reports whether a live contact other than id has name.
func (w *work) nameTaken(name string, id identity.UserID) (bool, error) {
	for _, e := range w.contacts {
		if e.exists && !e.deleted && e.c.Name == name && e.c.UserID != id {
			return true, nil
		}
	}
	c, err := w.tx.Contacts().ByName(name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if c.UserID == id {
		return false, nil
	}
	// The stored holder may have been renamed or deleted in this
	// transaction.
	if e, ok := w.contacts[c.UserID]; ok && (!e.exists || e.deleted || e.c.Name != name) {
		return false, nil
	}
	return true, nil
}

// sessions returns every session with a peer's device, loading them once.
func (w *work) deviceSessions(peer identity.UserID, dev []byte) ([]*sessEntry, error) {
	dk := devKey{peer, string(dev)}
	if l, ok := w.lists[dk]; ok {
		return live(l), nil
	}
	recs, err := w.tx.Sessions().ListDevice(peer, dev)
	if err != nil {
		return nil, err
	}
	var l []*sessEntry
	for _, r := range recs {
		k := sessKey{peer, string(dev), r.ID}
		e, ok := w.sessions[k]
		if !ok {
			e = &sessEntry{rec: r}
			w.sessions[k] = e
		}
		l = append(l, e)
	}
	// Sessions created in this transaction before the list was loaded.
	for k, e := range w.sessions {
		if k.peer == peer && k.device == string(dev) && !slices.Contains(l, e) {
			l = append(l, e)
		}
	}
	w.lists[dk] = l
	return live(l), nil
}

func live(l []*sessEntry) []*sessEntry {
	out := make([]*sessEntry, 0, len(l))
	for _, e := range l {
		if !e.deleted {
			out = append(out, e)
		}
	}
	return out
}

// session returns one session, or nil.
func (w *work) session(peer identity.UserID, dev []byte, id store.SessionID) (*sessEntry, error) {
	if id == (store.SessionID{}) || len(dev) == 0 {
		return nil, nil
	}
	k := sessKey{peer, string(dev), id}
	if e, ok := w.sessions[k]; ok {
		if e.deleted {
			return nil, nil
		}
		return e, nil
	}
	if _, ok := w.lists[devKey{peer, string(dev)}]; ok {
		return nil, nil // the full list is loaded and it is not there
	}
	r, err := w.tx.Sessions().Get(peer, dev, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrCorrupt) {
		// A damaged session (the store notes it) is as good as none: the
		// next message makes a new one.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &sessEntry{rec: r}
	w.sessions[k] = e
	return e, nil
}

// addSession caches a new session, to be written at the flush.
func (w *work) addSession(rec store.Session, st *ratchet.State) *sessEntry {
	e := &sessEntry{rec: rec, st: st, dirty: true, fresh: true}
	k := sessKey{rec.Peer, string(rec.Device), rec.ID}
	w.sessions[k] = e
	dk := devKey{rec.Peer, string(rec.Device)}
	if l, ok := w.lists[dk]; ok {
		w.lists[dk] = append(l, e)
	}
	return e
}

// state returns the session's ratchet state, decoding it once.
func (e *sessEntry) state() (*ratchet.State, error) {
	if e.st != nil {
		return e.st, nil
	}
	st := new(ratchet.State)
	if err := st.UnmarshalBinary(e.rec.State); err != nil {
		return nil, fmt.Errorf("session %x: %w", e.rec.ID[:4], err)
	}
	e.st = st
	return st, nil
}

// seenHas reports whether h is in the seen-set (or was added in this
// transaction).
func (w *work) seenHas(h [32]byte) (bool, error) {
	if w.seen[h] {
		return true, nil
	}
	return w.tx.Seen().Has(h)
}

// seenAdd adds h to the seen-set until until.
func (w *work) seenAdd(h [32]byte, until time.Time) error {
	w.seen[h] = true
	return w.tx.Seen().Add(h, until)
}

// seenAddRequest adds h until until as the ciphertext of a message of the
// request of uid: the request keeps the entries of its latest
// RequestMessages ciphertexts, as many as the messages it may keep, and
// the older ones go. Older ciphertexts of the session are refused by the
// ratchet (their keys are gone), and those of a dropped request by the
// lack of a session, so the set need not grow with what strangers send.
func (w *work) seenAddRequest(uid identity.UserID, h [32]byte, until time.Time) error {
	w.seen[h] = true
	if err := w.tx.Seen().AddRequest(uid, h, until); err != nil {
		return err
	}
	_, err := w.tx.Seen().ForgetRequest(uid, w.s.opt.RequestMessages)
	return err
}

// seenAddFirst adds h, the replay hash of a first message that used signed
// prekey spk, to the seen-set for as long as the prekey is kept.
func (w *work) seenAddFirst(h [32]byte, spk uint32) error {
	w.seen[h] = true
	return w.tx.Seen().AddFirst(h, spk)
}

// receipt notes a received message for the delivery receipt the flush
// sends to its sender.
func (w *work) receipt(peer identity.UserID, id protocol.MessageID) {
	if _, ok := w.receipts[peer]; !ok {
		w.rorder = append(w.rorder, peer)
	}
	w.receipts[peer] = append(w.receipts[peer], id)
}

// flush queues the delivery receipts of the batch and writes every changed
// session and contact.
func (w *work) flush() error {
	for _, peer := range w.rorder {
		ids := w.receipts[peer]
		if err := w.queueReceipts(peer, kindDelivery, ids); err != nil {
			return err
		}
	}
	w.receipts, w.rorder = map[identity.UserID][]protocol.MessageID{}, nil
	keys := make([]sessKey, 0, len(w.sessions))
	for k := range w.sessions {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b sessKey) int {
		if c := bytes.Compare(a.peer[:], b.peer[:]); c != 0 {
			return c
		}
		if c := bytes.Compare([]byte(a.device), []byte(b.device)); c != 0 {
			return c
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	for _, k := range keys {
		e := w.sessions[k]
		switch {
		case e.deleted:
			if !e.fresh {
				if err := w.tx.Sessions().Delete(k.peer, []byte(k.device), k.id); err != nil {
					return err
				}
			}
		case e.dirty:
			if e.st != nil {
				b, err := e.st.MarshalBinary()
				if err != nil {
					return err
				}
				e.rec.State = b
			}
			if err := w.tx.Sessions().Put(e.rec); err != nil {
				return err
			}
		}
	}
	// Deletions first, so that a name freed in this transaction can be
	// taken by another contact.
	cs := make([]*contactEntry, 0, len(w.contacts))
	for _, e := range w.contacts {
		if e.dirty || e.deleted {
			cs = append(cs, e)
		}
	}
	slices.SortFunc(cs, func(a, b *contactEntry) int {
		if a.deleted != b.deleted {
			if a.deleted {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.c.UserID[:], b.c.UserID[:])
	})
	for _, e := range cs {
		if e.deleted {
			if err := w.tx.Contacts().Delete(e.c.UserID); err != nil {
				return err
			}
			continue
		}
		// Free the name first if another dirty contact gives it up.
		if err := w.tx.Contacts().Put(e.c); err != nil {
			if errors.Is(err, store.ErrNameTaken) {
				if err2 := w.renameHolder(e.c.Name, e.c.UserID); err2 != nil {
					return err2
				}
				err = w.tx.Contacts().Put(e.c)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// renameHolder writes the stored holder of name first when its cached
// record gave the name up, so that the name index is free.
func (w *work) renameHolder(name string, taker identity.UserID) error {
	c, err := w.tx.Contacts().ByName(name)
	if err != nil {
		return err
	}
	e, ok := w.contacts[c.UserID]
	if !ok || c.UserID == taker || e.c.Name == name {
		return fmt.Errorf("contact %q: %w", name, store.ErrNameTaken)
	}
	return w.tx.Contacts().Put(e.c)
}
