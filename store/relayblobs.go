package store

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// The relay's attachment blobs: what the store keeps about them. The bytes
// of a blob live outside the key-value store, in a file named by its hash
// (store/blobfs): 10 GiB of 256 KiB to 16 MiB values would make badger's
// value log the relay's largest structure, rewritten by its garbage
// collection after every expiry, while a file is written once and unlinked
// once. One blob is stored once, however many references it has; each
// reference (a writer's upload for one mailbox) has its own capabilities,
// expiry and readers, and is charged to its mailbox's blob quota and to
// the creator quotas of that mailbox (RelayMailbox.Quotas), so that one
// client's mailboxes together hold a bounded part of the blob store; a
// reference for a group log is charged to that log's blob quota.
//
//	tRelayBlob         hash(32)                    -> RelayBlob
//	tRelayBlobRef      hash(32) readcap(32)        -> RelayBlobRef
//	tRelayBlobRefExp   until(8) hash(32) readcap(32) -> ""
//	tRelayBlobByMbox   mailbox(32) hash(32) readcap(32) -> ""
//	tRelayBlobUsage    mailbox(32)                 -> BlobUsage
//	tRelayBlobByLog    log(32) hash(32) readcap(32) -> ""
//	tRelayBlobLogUsage log(32)                     -> BlobUsage
//	tRelayBlobTotals   (one key)                   -> RelayBlobTotals
//
// The order a relay follows so that no crash loses a blob it acknowledged
// or keeps one nobody references: the file is written and synced before
// AddBlobRef commits; a file is unlinked only after the transaction that
// removed its last reference (RemoveBlobRef reports it) committed. A crash
// between the two leaves a file without a record, which the relay removes
// when it starts (HasBlob tells).

// RelayBlob is one blob the relay stores.
type RelayBlob struct {
	Hash [32]byte
	Size uint64
	// Refs is the number of references to it (set by the store).
	Refs     uint64
	StoredAt time.Time
}

const relayBlobVersion = 1

func (b *RelayBlob) marshal() []byte {
	e := newEnc(relayBlobVersion, 24)
	e.uvarint(b.Size)
	e.uvarint(b.Refs)
	e.time(b.StoredAt)
	return e.b
}

func (b *RelayBlob) unmarshal(v []byte) error {
	d, _ := newDec("relay blob", v, relayBlobVersion)
	b.Size = d.uvarint()
	b.Refs = d.uvarint()
	b.StoredAt = d.time()
	return d.finish("relay blob")
}

// RelayBlobRef is one reference to a blob: an upload for one mailbox, or
// for one group log (exactly one of Mailbox and Log is set).
type RelayBlobRef struct {
	Hash [32]byte
	// ReadCapHash is SHA-256 of the reference's read capability: its name.
	ReadCapHash [32]byte
	// WriteCapHash is SHA-256 of the writer's capability.
	WriteCapHash [32]byte
	Mailbox      protocol.MailboxID
	Log          protocol.GroupLogID
	Size         uint64
	StoredUntil  time.Time
	// Readers is how many readers' acknowledgements remain before the
	// reference is deleted (at least 1).
	Readers   uint64
	CreatedAt time.Time
}

// A mailbox's reference is written as version 1, a group log's as
// version 2 (the log's ID in place of the mailbox's).
const (
	relayBlobRefVersion    = 1
	relayBlobRefLogVersion = 2
)

func (r *RelayBlobRef) marshal() []byte {
	var e *enc
	if r.Log.IsZero() {
		e = newEnc(relayBlobRefVersion, 96)
		e.fixed(r.WriteCapHash[:])
		e.fixed(r.Mailbox[:])
	} else {
		e = newEnc(relayBlobRefLogVersion, 96)
		e.fixed(r.WriteCapHash[:])
		e.fixed(r.Log[:])
	}
	e.uvarint(r.Size)
	e.time(r.StoredUntil)
	e.uvarint(r.Readers)
	e.time(r.CreatedAt)
	return e.b
}

func (r *RelayBlobRef) unmarshal(v []byte) error {
	d, version := newDec("relay blob reference", v, relayBlobRefVersion, relayBlobRefLogVersion)
	d.fixed(r.WriteCapHash[:])
	if version == relayBlobRefLogVersion {
		d.fixed(r.Log[:])
	} else {
		d.fixed(r.Mailbox[:])
	}
	r.Size = d.uvarint()
	r.StoredUntil = d.time()
	r.Readers = d.uvarint()
	r.CreatedAt = d.time()
	return d.finish("relay blob reference")
}

// BlobUsage is what a mailbox's (or a group log's) blob references hold: their count and the
// bytes they reference (a blob referenced twice counts twice: each upload
// pays its own quota).
type BlobUsage struct {
	Count, Bytes uint64
	// Quotas are the creator quotas Bytes are charged to (set by the
	// store from the mailbox's when the usage begins, so that references
	// outliving their mailbox are taken off the right quotas; zero for
	// none, for a group log's, and for usage begun before blob bytes were
	// charged).
	Quotas [2]RelayQuotaKey
}

// blobUsageVersion 2 adds Quotas; version 1 records have none.
const blobUsageVersion = 2

func (u *BlobUsage) marshal() []byte {
	e := newEnc(blobUsageVersion, 52)
	e.uvarint(u.Count)
	e.uvarint(u.Bytes)
	for _, q := range u.Quotas {
		e.fixed(q[:])
	}
	return e.b
}

func (u *BlobUsage) unmarshal(v []byte) error {
	d, ver := newDec("blob usage", v, 1, blobUsageVersion)
	u.Count = d.uvarint()
	u.Bytes = d.uvarint()
	if ver >= 2 {
		for i := range u.Quotas {
			d.fixed(u.Quotas[i][:])
		}
	}
	return d.finish("blob usage")
}

// BlobCharge is what one more reference to a blob for a mailbox is
// checked against, as it is before the reference is added.
type BlobCharge struct {
	// Usage is the mailbox's, its Quotas set to the creator quotas the
	// reference will be charged to.
	Usage BlobUsage
	// Creator holds those quotas (zero where Usage.Quotas has no key),
	// counting the mailbox's blob bytes not charged to them yet (usage
	// begun before blob bytes were charged: the next reference charges
	// them all).
	Creator [2]RelayQuota
	// Totals are the relay's.
	Totals RelayBlobTotals
	// Stored: the blob is stored already (another reference holds it).
	Stored bool
}

// RelayBlobTotals are the relay's blob counts: the blobs stored (once
// each) and their bytes, which the relay's total blob quota bounds, and
// the references.
type RelayBlobTotals struct {
	Blobs, Bytes uint64
	Refs         uint64
}

const relayBlobTotalsVersion = 1

func (t *RelayBlobTotals) marshal() []byte {
	e := newEnc(relayBlobTotalsVersion, 30)
	e.uvarint(t.Blobs)
	e.uvarint(t.Bytes)
	e.uvarint(t.Refs)
	return e.b
}

func (t *RelayBlobTotals) unmarshal(v []byte) error {
	d, _ := newDec("relay blob totals", v, relayBlobTotalsVersion)
	t.Blobs = d.uvarint()
	t.Bytes = d.uvarint()
	t.Refs = d.uvarint()
	return d.finish("relay blob totals")
}

// BlobRefKey names a reference.
type BlobRefKey struct {
	Hash        [32]byte
	ReadCapHash [32]byte
}

// RelayBlobs is the relay's blob tables.
type RelayBlobs struct{ tx *Tx }

// RelayBlobs returns the relay's blob tables.
func (tx *Tx) RelayBlobs() RelayBlobs { return RelayBlobs{tx} }

func relayBlobKey(h [32]byte) []byte { return key(tRelayBlob, h[:]) }
func relayBlobRefKey(k BlobRefKey) []byte {
	return key(tRelayBlobRef, k.Hash[:], k.ReadCapHash[:])
}
func relayBlobRefExpKey(until time.Time, k BlobRefKey) []byte {
	t := timeKey(until)
	return key(tRelayBlobRefExp, t[:], k.Hash[:], k.ReadCapHash[:])
}
func relayBlobByMboxKey(mb protocol.MailboxID, k BlobRefKey) []byte {
	return key(tRelayBlobByMbox, mb[:], k.Hash[:], k.ReadCapHash[:])
}
func relayBlobUsageKey(mb protocol.MailboxID) []byte { return key(tRelayBlobUsage, mb[:]) }
func relayBlobByLogKey(log protocol.GroupLogID, k BlobRefKey) []byte {
	return key(tRelayBlobByLog, log[:], k.Hash[:], k.ReadCapHash[:])
}
func relayBlobLogUsageKey(log protocol.GroupLogID) []byte { return key(tRelayBlobLogUsage, log[:]) }

// ownerKeys returns the keys of r's owner (its mailbox or its log): its
// index entry for r and its usage record.
func (r *RelayBlobRef) ownerKeys() (index, usage []byte) {
	k := BlobRefKey{r.Hash, r.ReadCapHash}
	if !r.Log.IsZero() {
		return relayBlobByLogKey(r.Log, k), relayBlobLogUsageKey(r.Log)
	}
	return relayBlobByMboxKey(r.Mailbox, k), relayBlobUsageKey(r.Mailbox)
}

var relayBlobTotalsKey = []byte{tRelayBlobTotals}

// Blob returns the record of the blob named h, or ErrNotFound.
func (s RelayBlobs) Blob(h [32]byte) (RelayBlob, error) {
	b := RelayBlob{Hash: h}
	if ok, err := s.tx.getRecord(relayBlobKey(h), &b); err != nil || !ok {
		return b, cmp.Or(err, notFound("relay blob", h[:4]))
	}
	return b, nil
}

// HasBlob reports whether the blob named h is stored (has a reference).
func (s RelayBlobs) HasBlob(h [32]byte) (bool, error) { return s.tx.exists(relayBlobKey(h)) }

// Ref returns reference k, or ErrNotFound.
func (s RelayBlobs) Ref(k BlobRefKey) (RelayBlobRef, error) {
	r := RelayBlobRef{Hash: k.Hash, ReadCapHash: k.ReadCapHash}
	if ok, err := s.tx.getRecord(relayBlobRefKey(k), &r); err != nil || !ok {
		return r, cmp.Or(err, notFound("relay blob reference", k.Hash[:4]))
	}
	return r, nil
}

// Usage returns the blob usage of mailbox mb (zero if none).
func (s RelayBlobs) Usage(mb protocol.MailboxID) (BlobUsage, error) {
	return s.usage(relayBlobUsageKey(mb))
}

// LogUsage returns the blob usage of group log id (zero if none).
func (s RelayBlobs) LogUsage(id protocol.GroupLogID) (BlobUsage, error) {
	return s.usage(relayBlobLogUsageKey(id))
}

func (s RelayBlobs) usage(key []byte) (BlobUsage, error) {
	var u BlobUsage
	_, err := s.tx.getRecord(key, &u)
	return u, err
}

func (s RelayBlobs) putUsage(key []byte, u BlobUsage) error {
	if u.Count == 0 && u.Bytes == 0 {
		return s.tx.del(key)
	}
	return s.tx.set(key, u.marshal())
}

// Totals returns the relay's blob totals (zero for none).
func (s RelayBlobs) Totals() (RelayBlobTotals, error) {
	var t RelayBlobTotals
	_, err := s.tx.getRecord(relayBlobTotalsKey, &t)
	return t, err
}

// Charge returns what one more reference to blob h for mailbox mb would
// be checked against now (AddBlobRef's check sees the same).
func (s RelayBlobs) Charge(mb protocol.MailboxID, h [32]byte) (BlobCharge, error) {
	c, _, err := s.charge(&RelayBlobRef{Mailbox: mb, Hash: h})
	return c, err
}

// LogCharge returns what one more reference to blob h for group log id
// would be checked against now: the log's usage (a log has no creator
// quotas) and the totals.
func (s RelayBlobs) LogCharge(id protocol.GroupLogID, h [32]byte) (BlobCharge, error) {
	c, _, err := s.charge(&RelayBlobRef{Log: id, Hash: h})
	return c, err
}

// charge is Charge (LogCharge, for a reference r of a log), with the
// blob's record when it is stored.
func (s RelayBlobs) charge(r *RelayBlobRef) (BlobCharge, RelayBlob, error) {
	var c BlobCharge
	b, err := s.Blob(r.Hash)
	c.Stored = err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return c, b, err
	}
	_, usage := r.ownerKeys()
	if c.Usage, err = s.usage(usage); err != nil {
		return c, b, err
	}
	mb := r.Mailbox
	var uncharged uint64
	if r.Log.IsZero() && c.Usage.Quotas == ([2]RelayQuotaKey{}) {
		m, err := s.tx.Relay().Mailbox(mb)
		switch {
		case errors.Is(err, ErrNotFound):
			// No mailbox record (its references are swept): no quotas.
		case err != nil:
			return c, b, err
		default:
			c.Usage.Quotas, uncharged = m.Quotas, c.Usage.Bytes
		}
	}
	for i, k := range c.Usage.Quotas {
		if k == (RelayQuotaKey{}) {
			continue
		}
		if c.Creator[i], err = s.tx.Relay().Quota(k); err != nil {
			return c, b, err
		}
		c.Creator[i].BlobBytes += uncharged
	}
	c.Totals, err = s.Totals()
	return c, b, err
}

// AddBlobRef stores reference r (its Readers: at least 1), and the blob
// record if this is the blob's first reference: the caller has stored the
// blob's bytes durably before, and r.Size is their size. It charges r.Size
// to r.Mailbox's usage and to the mailbox's creator quotas, or to r.Log's
// usage (exactly one of the two is set). ErrExists: the
// reference is already stored (it is returned; an upload whose answer was
// lost, or a second writer with the same read capability, which the
// caller tells apart by WriteCapHash). ErrInvalid: r.Size differs from the
// stored blob's. check, if not nil, sees the charge as it is before the
// reference is added (what a quota check needs); if it returns an error,
// nothing is written.
func (s RelayBlobs) AddBlobRef(r RelayBlobRef, check func(c *BlobCharge) error) (RelayBlobRef, error) {
	k := BlobRefKey{r.Hash, r.ReadCapHash}
	if r.Size == 0 || r.Mailbox.IsZero() == r.Log.IsZero() {
		return r, fmt.Errorf("relay blob reference: %w: size %d, not exactly one of mailbox and log", ErrInvalid, r.Size)
	}
	index, usage := r.ownerKeys()
	if old, err := s.Ref(k); err == nil {
		return old, fmt.Errorf("relay blob reference %x: %w", k.Hash[:4], ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return r, err
	}
	c, b, err := s.charge(&r)
	if err != nil {
		return r, err
	}
	if c.Stored && b.Size != r.Size {
		return r, fmt.Errorf("relay blob %x: %w: size %d, stored %d", r.Hash[:4], ErrInvalid, r.Size, b.Size)
	}
	if check != nil {
		if err := check(&c); err != nil {
			return r, err
		}
	}
	t, u := c.Totals, c.Usage
	if !c.Stored {
		b = RelayBlob{Hash: r.Hash, Size: r.Size, StoredAt: r.CreatedAt}
		t.Blobs++
		t.Bytes += r.Size
	}
	b.Refs++
	t.Refs++
	u.Count++
	u.Bytes += r.Size
	for i, k := range u.Quotas {
		if k == (RelayQuotaKey{}) {
			continue
		}
		q := c.Creator[i]
		q.BlobBytes += r.Size
		if err := s.tx.Relay().putQuota(k, q); err != nil {
			return r, err
		}
	}
	r.Readers = max(r.Readers, 1)
	for _, kv := range []struct{ k, v []byte }{
		{relayBlobKey(r.Hash), b.marshal()},
		{relayBlobRefKey(k), r.marshal()},
		{relayBlobRefExpKey(r.StoredUntil, k), nil},
		{index, nil},
		{relayBlobTotalsKey, t.marshal()},
	} {
		if err := s.tx.set(kv.k, kv.v); err != nil {
			return r, err
		}
	}
	return r, s.putUsage(usage, u)
}

// RemoveBlobRef deletes reference k and takes it off its mailbox's usage
// and the creator quotas that usage is charged to (or off its log's
// usage).
// It reports whether that was the blob's last reference: the blob record
// is deleted too, and the caller unlinks the blob's file once this
// transaction has committed. A missing reference is ErrNotFound.
func (s RelayBlobs) RemoveBlobRef(k BlobRefKey) (last bool, err error) {
	r, err := s.Ref(k)
	if err != nil {
		return false, err
	}
	index, usage := r.ownerKeys()
	for _, key := range [][]byte{relayBlobRefKey(k), relayBlobRefExpKey(r.StoredUntil, k), index} {
		if err := s.tx.del(key); err != nil {
			return false, err
		}
	}
	u, err := s.usage(usage)
	if err != nil {
		return false, err
	}
	sub(&u.Count, 1)
	sub(&u.Bytes, r.Size)
	if err := s.putUsage(usage, u); err != nil {
		return false, err
	}
	for _, qk := range u.Quotas {
		if qk == (RelayQuotaKey{}) {
			continue
		}
		q, err := s.tx.Relay().Quota(qk)
		if err != nil {
			return false, err
		}
		sub(&q.BlobBytes, r.Size)
		if err := s.tx.Relay().putQuota(qk, q); err != nil {
			return false, err
		}
	}
	t, err := s.Totals()
	if err != nil {
		return false, err
	}
	sub(&t.Refs, 1)
	b, err := s.Blob(k.Hash)
	switch {
	case errors.Is(err, ErrNotFound):
		// A record an older program lost: nothing to count down.
	case err != nil:
		return false, err
	case b.Refs <= 1:
		last = true
		sub(&t.Blobs, 1)
		sub(&t.Bytes, b.Size)
		if err := s.tx.del(relayBlobKey(k.Hash)); err != nil {
			return false, err
		}
	default:
		b.Refs--
		if err := s.tx.set(relayBlobKey(k.Hash), b.marshal()); err != nil {
			return false, err
		}
	}
	return last, s.tx.set(relayBlobTotalsKey, t.marshal())
}

// AckBlobRef counts one reader's acknowledgement of reference k: the last
// one removes it (as RemoveBlobRef; removed and last report what that did).
func (s RelayBlobs) AckBlobRef(k BlobRefKey) (removed, last bool, err error) {
	r, err := s.Ref(k)
	if err != nil {
		return false, false, err
	}
	if r.Readers > 1 {
		r.Readers--
		return false, false, s.tx.set(relayBlobRefKey(k), r.marshal())
	}
	last, err = s.RemoveBlobRef(k)
	return err == nil, last, err
}

// ExpiredRefs returns up to limit references whose StoredUntil is not
// after now, earliest first (limit <= 0: all).
func (s RelayBlobs) ExpiredRefs(now time.Time, limit int) ([]BlobRefKey, error) {
	keys, err := s.tx.expired(tRelayBlobRefExp, now, limit, 1+8+32+32, "relay blob expiry index")
	out := make([]BlobRefKey, len(keys))
	for i, k := range keys {
		copy(out[i].Hash[:], k[9:41])
		copy(out[i].ReadCapHash[:], k[41:])
	}
	return out, err
}

// MailboxRefs returns up to limit references charged to mailbox mb
// (limit <= 0: all), for deleting a mailbox.
func (s RelayBlobs) MailboxRefs(mb protocol.MailboxID, limit int) ([]BlobRefKey, error) {
	return s.ownerRefs(key(tRelayBlobByMbox, mb[:]), limit, "relay blob mailbox index")
}

// LogRefs returns up to limit references charged to group log id (limit
// <= 0: all), for deleting a log's blobs.
func (s RelayBlobs) LogRefs(id protocol.GroupLogID, limit int) ([]BlobRefKey, error) {
	return s.ownerRefs(key(tRelayBlobByLog, id[:]), limit, "relay blob log index")
}

// ownerRefs returns up to limit references of the owner index under
// prefix (a table byte and a 32-byte mailbox or log ID).
func (s RelayBlobs) ownerRefs(prefix []byte, limit int, what string) ([]BlobRefKey, error) {
	var out []BlobRefKey
	err := s.tx.scanPrefix(prefix, false, func(k, _ []byte) error {
		if len(k) != 1+32+32+32 {
			return fmt.Errorf("%s: %w", what, ErrCorrupt)
		}
		var r BlobRefKey
		copy(r.Hash[:], k[33:65])
		copy(r.ReadCapHash[:], k[65:])
		out = append(out, r)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// Mailboxes returns up to limit mailboxes that have blob references,
// after after in byte order (the zero ID: from the start), for the sweep
// that drops the references of deleted mailboxes.
func (s RelayBlobs) Mailboxes(after protocol.MailboxID, limit int) ([]protocol.MailboxID, error) {
	var out []protocol.MailboxID
	lo := key(tRelayBlobUsage, after[:])
	if after != (protocol.MailboxID{}) {
		lo = append(lo, 0) // strictly after
	}
	err := s.tx.scan(lo, prefixEnd([]byte{tRelayBlobUsage}), false, func(k, _ []byte) error {
		if len(k) != 1+32 {
			return fmt.Errorf("relay blob usage key: %w", ErrCorrupt)
		}
		out = append(out, protocol.MailboxID(k[1:]))
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// Logs returns up to limit group logs that have blob references, after
// after in byte order (the zero ID: from the start), for the sweep that
// drops the references of deleted logs.
func (s RelayBlobs) Logs(after protocol.GroupLogID, limit int) ([]protocol.GroupLogID, error) {
	var out []protocol.GroupLogID
	lo := key(tRelayBlobLogUsage, after[:])
	if !after.IsZero() {
		lo = append(lo, 0) // strictly after
	}
	err := s.tx.scan(lo, prefixEnd([]byte{tRelayBlobLogUsage}), false, func(k, _ []byte) error {
		if len(k) != 1+32 {
			return fmt.Errorf("relay blob log usage key: %w", ErrCorrupt)
		}
		out = append(out, protocol.GroupLogID(k[1:]))
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}
