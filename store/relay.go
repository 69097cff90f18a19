package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// The relay's tables: what a community relay holds for others (the owner's
// side of a mailbox is Mailboxes). Every count a quota check needs is kept
// in a record (the mailbox's, the token's, the relay's totals) and changed
// in the same transaction as the data it counts, so no check scans and no
// crash leaves a count behind its data.
//
//	tRelayMailbox    id(32)                      -> RelayMailbox
//	tRelayToken      mailbox(32) hash(32)        -> RelayToken
//	tRelayEnvelope   mailbox(32) seq(8)          -> token hash, stored-until, envelope
//	tRelayExpiry     until(8) mailbox(32) seq(8) -> ""
//	tRelayCard       mailbox(32) hash(32)        -> card blob
//	tRelayPrekey     mailbox(32) expires(8) n(8) -> prekey blob
//	tRelayPrekeyExp  expires(8) mailbox(32) n(8) -> ""
//	tRelayTotals     (one key)                   -> RelayTotals
//	tRelayDeleting   id(32)                      -> "" (mailboxes being deleted)
//	tRelayQuota      key(16)                     -> RelayQuota
//
// The tables are written to by one goroutine of the relay server (its
// writer), so their shared records (totals, a busy mailbox) never make
// transactions conflict; they stay correct under concurrent Updates
// anyway, which a backend serializes or retries.

// Relay size limits.
const (
	// MaxRelayEnvelope bounds a stored envelope (crypto/seal's largest).
	MaxRelayEnvelope = 64 << 10
	// MaxRelayBlob bounds a stored card or prekey blob.
	MaxRelayBlob = 64 << 10
)

// ErrNoRelayToken is the ErrNotFound of a token hash that is not
// registered for the mailbox (as opposed to a missing mailbox).
var ErrNoRelayToken = fmt.Errorf("relay token: %w", ErrNotFound)

// RelayMailbox is a mailbox a relay holds for its (anonymous) owner.
type RelayMailbox struct {
	ID protocol.MailboxID
	// OwnerKey is the owner's Ed25519 authentication key; SealingKey the
	// X25519 key envelopes are sealed to (kept for the owner's reference;
	// the relay never uses it).
	OwnerKey   [32]byte
	SealingKey [32]byte
	CreatedAt  time.Time
	// SeenAt is the last time the owner authenticated.
	SeenAt time.Time
	// Set by the store: LastSeq is the sequence number of the latest
	// envelope; Count and Bytes the envelopes stored and their size;
	// Tokens the token hashes registered; Prekeys the prekey blobs held and
	// PrekeySeq the number of the latest; Deleting that DeleteMailbox
	// began (the mailbox accepts nothing more).
	LastSeq   uint64
	Count     uint64
	Bytes     uint64
	Tokens    uint64
	Prekeys   uint64
	PrekeySeq uint64
	Deleting  bool
	// KeyBytes is the size of its card and prekey blobs counted in its
	// Quotas (set by the store; blobs stored before these were counted
	// are not: a mailbox never takes off its quotas more than it
	// counted).
	KeyBytes uint64
	// Quotas are the keys of the shared quotas the mailbox counts against
	// (the relay's per-creator quotas, indexed by RelayQuotaPeer and
	// RelayQuotaSubnet; zero: none), set at creation: the bytes of its
	// envelopes and of its card and prekey blobs count in each, its
	// attachment blobs' bytes apart (RelayBlobs), and the mailbox itself
	// while it exists.
	Quotas [2]RelayQuotaKey
}

// The creator quotas of RelayMailbox.Quotas, by index.
const (
	// RelayQuotaPeer is the quota of the peer that created the mailbox.
	RelayQuotaPeer = iota
	// RelayQuotaSubnet is the quota of the address range it was created
	// from.
	RelayQuotaSubnet
)

// relayMailboxVersion 2 adds Quotas, 3 KeyBytes; older records have
// none.
const relayMailboxVersion = 3

func (m *RelayMailbox) marshal() []byte {
	e := newEnc(relayMailboxVersion, 182)
	e.fixed(m.ID[:])
	e.fixed(m.OwnerKey[:])
	e.fixed(m.SealingKey[:])
	e.time(m.CreatedAt)
	e.time(m.SeenAt)
	e.uvarint(m.LastSeq)
	e.uvarint(m.Count)
	e.uvarint(m.Bytes)
	e.uvarint(m.Tokens)
	e.uvarint(m.Prekeys)
	e.uvarint(m.PrekeySeq)
	e.bool(m.Deleting)
	for _, q := range m.Quotas {
		e.fixed(q[:])
	}
	e.uvarint(m.KeyBytes)
	return e.b
}

func (m *RelayMailbox) unmarshal(b []byte) error {
	d, v := newDec("relay mailbox", b, 1, 2, relayMailboxVersion)
	d.fixed(m.ID[:])
	d.fixed(m.OwnerKey[:])
	d.fixed(m.SealingKey[:])
	m.CreatedAt = d.time()
	m.SeenAt = d.time()
	m.LastSeq = d.uvarint()
	m.Count = d.uvarint()
	m.Bytes = d.uvarint()
	m.Tokens = d.uvarint()
	m.Prekeys = d.uvarint()
	m.PrekeySeq = d.uvarint()
	m.Deleting = d.bool()
	if v >= 2 {
		for i := range m.Quotas {
			d.fixed(m.Quotas[i][:])
		}
	}
	if v >= 3 {
		m.KeyBytes = d.uvarint()
	}
	return d.finish("relay mailbox")
}

// RelayQuotaKey names a quota shared by the mailboxes made by one creator
// (a peer, an address range): the relay derives it with a key of its own,
// so the store holds no peer ID or address.
type RelayQuotaKey [16]byte

// RelayQuota is what the mailboxes counting against one quota hold: how
// many of them exist, the bytes of their envelopes and of their card and
// prekey blobs (Bytes), and the bytes of the attachment blob references charged to them (each reference counts its
// blob's size, as in BlobUsage). The group logs made by the same creator
// count in it too (RelayGroupLog.Quotas): how many exist, and the bytes of
// their entries.
type RelayQuota struct {
	Mailboxes  uint64
	Bytes      uint64
	BlobBytes  uint64
	GroupLogs  uint64
	GroupBytes uint64
}

// relayQuotaVersion 2 adds BlobBytes, 3 GroupLogs and GroupBytes; older
// records have none.
const relayQuotaVersion = 3

func (q *RelayQuota) marshal() []byte {
	e := newEnc(relayQuotaVersion, 50)
	e.uvarint(q.Mailboxes)
	e.uvarint(q.Bytes)
	e.uvarint(q.BlobBytes)
	e.uvarint(q.GroupLogs)
	e.uvarint(q.GroupBytes)
	return e.b
}

func (q *RelayQuota) unmarshal(b []byte) error {
	d, v := newDec("relay quota", b, 1, 2, relayQuotaVersion)
	q.Mailboxes = d.uvarint()
	q.Bytes = d.uvarint()
	if v >= 2 {
		q.BlobBytes = d.uvarint()
	}
	if v >= 3 {
		q.GroupLogs = d.uvarint()
		q.GroupBytes = d.uvarint()
	}
	return d.finish("relay quota")
}

// RelayToken is a deposit-token hash registered for a mailbox, with its
// quota and what is stored under it now.
type RelayToken struct {
	Hash protocol.TokenHash
	// MaxCount and MaxBytes are the token's quota of stored envelopes.
	MaxCount, MaxBytes uint64
	// Count and Bytes are the envelopes stored under the token (set by the
	// store).
	Count, Bytes uint64
	CreatedAt    time.Time
	// HasCard: a card blob is stored for the token (set by the store).
	HasCard bool
}

const relayTokenVersion = 1

func (t *RelayToken) marshal() []byte {
	e := newEnc(relayTokenVersion, 80)
	e.fixed(t.Hash[:])
	e.uvarint(t.MaxCount)
	e.uvarint(t.MaxBytes)
	e.uvarint(t.Count)
	e.uvarint(t.Bytes)
	e.time(t.CreatedAt)
	e.bool(t.HasCard)
	return e.b
}

func (t *RelayToken) unmarshal(b []byte) error {
	d, _ := newDec("relay token", b, relayTokenVersion)
	d.fixed(t.Hash[:])
	t.MaxCount = d.uvarint()
	t.MaxBytes = d.uvarint()
	t.Count = d.uvarint()
	t.Bytes = d.uvarint()
	t.CreatedAt = d.time()
	t.HasCard = d.bool()
	return d.finish("relay token")
}

// RelayEnvelope is one stored envelope.
type RelayEnvelope struct {
	Mailbox protocol.MailboxID
	// Seq is the mailbox's sequence number for it (set by AddEnvelope).
	Seq uint64
	// Token is the hash of the token it was deposited with.
	Token       protocol.TokenHash
	StoredUntil time.Time
	Envelope    []byte
}

const relayEnvelopeVersion = 1

func (e *RelayEnvelope) marshal() []byte {
	w := newEnc(relayEnvelopeVersion, 48+len(e.Envelope))
	w.fixed(e.Token[:])
	w.time(e.StoredUntil)
	w.bytes(e.Envelope)
	return w.b
}

func (e *RelayEnvelope) unmarshal(b []byte) error {
	d, _ := newDec("relay envelope", b, relayEnvelopeVersion)
	d.fixed(e.Token[:])
	e.StoredUntil = d.time()
	e.Envelope = d.bytes(MaxRelayEnvelope)
	return d.finish("relay envelope")
}

// RelayTotals are the relay's counts over all mailboxes.
type RelayTotals struct {
	Mailboxes uint64
	Envelopes uint64
	// EnvelopeBytes is the size of the envelopes stored; BlobBytes of the
	// card and prekey blobs. Their sum is what the relay's total quota
	// bounds.
	EnvelopeBytes uint64
	BlobBytes     uint64
	Tokens        uint64
	Cards         uint64
	Prekeys       uint64
}

const relayTotalsVersion = 1

func (t *RelayTotals) marshal() []byte {
	e := newEnc(relayTotalsVersion, 40)
	for _, v := range []uint64{t.Mailboxes, t.Envelopes, t.EnvelopeBytes, t.BlobBytes, t.Tokens, t.Cards, t.Prekeys} {
		e.uvarint(v)
	}
	return e.b
}

func (t *RelayTotals) unmarshal(b []byte) error {
	d, _ := newDec("relay totals", b, relayTotalsVersion)
	for _, p := range []*uint64{&t.Mailboxes, &t.Envelopes, &t.EnvelopeBytes, &t.BlobBytes, &t.Tokens, &t.Cards, &t.Prekeys} {
		*p = d.uvarint()
	}
	return d.finish("relay totals")
}

// Relay is the relay's store: mailboxes held for others, their token
// hashes, envelopes, card and prekey blobs, and the totals.
type Relay struct{ tx *Tx }

// Relay returns the relay tables.
func (tx *Tx) Relay() Relay { return Relay{tx} }

func relayMailboxKey(id protocol.MailboxID) []byte { return key(tRelayMailbox, id[:]) }
func relayTokenKey(mb protocol.MailboxID, h protocol.TokenHash) []byte {
	return key(tRelayToken, mb[:], h[:])
}
func relayCardKey(mb protocol.MailboxID, h protocol.TokenHash) []byte {
	return key(tRelayCard, mb[:], h[:])
}
func relayEnvelopeKey(mb protocol.MailboxID, seq uint64) []byte {
	s := u64Key(seq)
	return key(tRelayEnvelope, mb[:], s[:])
}
func relayExpiryKey(until time.Time, mb protocol.MailboxID, seq uint64) []byte {
	t, s := timeKey(until), u64Key(seq)
	return key(tRelayExpiry, t[:], mb[:], s[:])
}
func relayPrekeyKey(mb protocol.MailboxID, expires time.Time, n uint64) []byte {
	t, s := timeKey(expires), u64Key(n)
	return key(tRelayPrekey, mb[:], t[:], s[:])
}
func relayPrekeyExpKey(expires time.Time, mb protocol.MailboxID, n uint64) []byte {
	t, s := timeKey(expires), u64Key(n)
	return key(tRelayPrekeyExp, t[:], mb[:], s[:])
}

var relayTotalsKey = []byte{tRelayTotals}

// Totals returns the relay's totals (zero for an empty relay).
func (r Relay) Totals() (RelayTotals, error) {
	var t RelayTotals
	b, err := r.tx.get(relayTotalsKey)
	if errors.Is(err, ErrNotFound) {
		return t, nil
	}
	if err != nil {
		return t, err
	}
	err = t.unmarshal(b)
	return t, err
}

// changeTotals applies fn to the totals and writes them back.
func (r Relay) changeTotals(fn func(t *RelayTotals)) error {
	t, err := r.Totals()
	if err != nil {
		return err
	}
	fn(&t)
	return r.tx.set(relayTotalsKey, t.marshal())
}

// sub subtracts without wrapping below zero: counts of data written by an
// older, buggy program must not become huge.
func sub(v *uint64, d uint64) {
	if *v < d {
		*v = 0
		return
	}
	*v -= d
}

// Quota returns what counts against quota k now (zero for none).
func (r Relay) Quota(k RelayQuotaKey) (RelayQuota, error) {
	var q RelayQuota
	b, err := r.tx.get(key(tRelayQuota, k[:]))
	if errors.Is(err, ErrNotFound) {
		return q, nil
	}
	if err != nil {
		return q, err
	}
	err = q.unmarshal(b)
	return q, err
}

// changeQuotas adds mailboxes and bytes (either may be negative, never
// wrapping below zero) to each quota of m; a quota back at zero is
// removed.
func (r Relay) changeQuotas(m *RelayMailbox, mailboxes int, bytes int64) error {
	return r.changeEach(m.Quotas, func(q *RelayQuota) {
		add(&q.Mailboxes, int64(mailboxes))
		add(&q.Bytes, bytes)
	})
}

// changeEach applies fn to each quota of keys (a zero key is none); a
// quota back at zero is removed.
func (r Relay) changeEach(keys [2]RelayQuotaKey, fn func(q *RelayQuota)) error {
	for _, k := range keys {
		if k == (RelayQuotaKey{}) {
			continue
		}
		q, err := r.Quota(k)
		if err != nil {
			return err
		}
		fn(&q)
		if err := r.putQuota(k, q); err != nil {
			return err
		}
	}
	return nil
}

// chargeKeys adds d bytes of card or prekey blobs to mailbox m's KeyBytes
// and its quotas (the caller writes m); a negative d takes off at most
// what m counted.
func (r Relay) chargeKeys(m *RelayMailbox, d int64) error {
	if d < 0 {
		d = -int64(min(uint64(-d), m.KeyBytes))
	}
	add(&m.KeyBytes, d)
	return r.changeQuotas(m, 0, d)
}

// putQuota writes quota k; a quota back at zero is removed.
func (r Relay) putQuota(k RelayQuotaKey, q RelayQuota) error {
	if q == (RelayQuota{}) {
		return r.tx.del(key(tRelayQuota, k[:]))
	}
	return r.tx.set(key(tRelayQuota, k[:]), q.marshal())
}

// add adds d to *v, stopping at zero.
func add(v *uint64, d int64) {
	if d < 0 {
		sub(v, uint64(-d))
		return
	}
	*v += uint64(d)
}

// CreateMailbox stores a new mailbox (its counts start at zero whatever m
// holds) and counts it in its quotas. It fails with ErrExists if the ID is
// taken.
func (r Relay) CreateMailbox(m RelayMailbox) error {
	if m.ID == (protocol.MailboxID{}) {
		return fmt.Errorf("relay mailbox: %w: zero ID", ErrInvalid)
	}
	ok, err := r.tx.exists(relayMailboxKey(m.ID))
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("relay mailbox %x: %w", m.ID[:4], ErrExists)
	}
	m.LastSeq, m.Count, m.Bytes, m.Tokens, m.Prekeys, m.PrekeySeq, m.Deleting, m.KeyBytes = 0, 0, 0, 0, 0, 0, false, 0
	if err := r.tx.set(relayMailboxKey(m.ID), m.marshal()); err != nil {
		return err
	}
	if err := r.changeQuotas(&m, 1, 0); err != nil {
		return err
	}
	return r.changeTotals(func(t *RelayTotals) { t.Mailboxes++ })
}

// Mailbox returns mailbox id, or ErrNotFound. A mailbox being deleted is
// returned with Deleting set.
func (r Relay) Mailbox(id protocol.MailboxID) (RelayMailbox, error) {
	var m RelayMailbox
	b, err := r.tx.get(relayMailboxKey(id))
	if errors.Is(err, ErrNotFound) {
		return m, notFound("relay mailbox", id[:4])
	}
	if err != nil {
		return m, err
	}
	err = m.unmarshal(b)
	return m, err
}

// live returns mailbox id unless it is missing or being deleted
// (ErrNotFound).
func (r Relay) live(id protocol.MailboxID) (RelayMailbox, error) {
	m, err := r.Mailbox(id)
	if err == nil && m.Deleting {
		return m, notFound("relay mailbox", id[:4])
	}
	return m, err
}

func (r Relay) putMailbox(m *RelayMailbox) error {
	return r.tx.set(relayMailboxKey(m.ID), m.marshal())
}

// Seen records that the owner of mailbox id authenticated at t.
func (r Relay) Seen(id protocol.MailboxID, t time.Time) error {
	m, err := r.live(id)
	if err != nil {
		return err
	}
	m.SeenAt = t
	return r.putMailbox(&m)
}

// PutToken registers token hash t.Hash for mailbox mb with t's quota, or
// changes the quota of a registered one (its usage is kept). It returns the
// record as stored and whether it was new. ErrNotFound: no such mailbox.
func (r Relay) PutToken(mb protocol.MailboxID, t RelayToken) (RelayToken, bool, error) {
	m, err := r.live(mb)
	if err != nil {
		return t, false, err
	}
	old, err := r.Token(mb, t.Hash)
	switch {
	case err == nil:
		old.MaxCount, old.MaxBytes = t.MaxCount, t.MaxBytes
		return old, false, r.tx.set(relayTokenKey(mb, t.Hash), old.marshal())
	case !errors.Is(err, ErrNotFound):
		return t, false, err
	}
	t.Count, t.Bytes, t.HasCard = 0, 0, false
	if err := r.tx.set(relayTokenKey(mb, t.Hash), t.marshal()); err != nil {
		return t, false, err
	}
	m.Tokens++
	if err := r.putMailbox(&m); err != nil {
		return t, false, err
	}
	return t, true, r.changeTotals(func(tt *RelayTotals) { tt.Tokens++ })
}

// Token returns token hash h of mailbox mb, or ErrNotFound.
func (r Relay) Token(mb protocol.MailboxID, h protocol.TokenHash) (RelayToken, error) {
	var t RelayToken
	b, err := r.tx.get(relayTokenKey(mb, h))
	if errors.Is(err, ErrNotFound) {
		return t, fmt.Errorf("%x: %w", h[:4], ErrNoRelayToken)
	}
	if err != nil {
		return t, err
	}
	err = t.unmarshal(b)
	return t, err
}

// DeleteToken removes token hash h of mailbox mb and its card blob; a
// missing one is not an error. Envelopes deposited with it stay (and no
// longer count against any token).
func (r Relay) DeleteToken(mb protocol.MailboxID, h protocol.TokenHash) error {
	t, err := r.Token(mb, h)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.deleteCard(mb, h); err != nil {
		return err
	}
	if err := r.tx.del(relayTokenKey(mb, t.Hash)); err != nil {
		return err
	}
	m, err := r.Mailbox(mb)
	if err != nil {
		return err
	}
	sub(&m.Tokens, 1)
	if err := r.putMailbox(&m); err != nil {
		return err
	}
	return r.changeTotals(func(tt *RelayTotals) { sub(&tt.Tokens, 1) })
}

// Tokens calls fn for each token of mailbox mb, by hash.
func (r Relay) Tokens(mb protocol.MailboxID, fn func(t RelayToken) error) error {
	return r.tx.scanPrefix(key(tRelayToken, mb[:]), false, func(_, v []byte) error {
		var t RelayToken
		if err := t.unmarshal(v); err != nil {
			return err
		}
		return fn(t)
	})
}

// DeleteMailbox deletes mailbox id and everything it holds, about limit
// records per call (limit <= 0: all; at least 16), so that a large mailbox
// is deleted in transactions of a bounded size. The first call marks the
// mailbox Deleting (it then accepts nothing) and lists it in Deleting;
// call again until done is true. A missing mailbox is done.
func (r Relay) DeleteMailbox(id protocol.MailboxID, limit int) (done bool, err error) {
	m, err := r.Mailbox(id)
	if errors.Is(err, ErrNotFound) {
		return true, r.tx.del(key(tRelayDeleting, id[:]))
	}
	if err != nil {
		return false, err
	}
	if !m.Deleting {
		m.Deleting = true
		if err := r.putMailbox(&m); err != nil {
			return false, err
		}
		if err := r.tx.set(key(tRelayDeleting, id[:]), nil); err != nil {
			return false, err
		}
	}
	// Each item below takes two deletions (a record and its index, or a
	// token and its card).
	items := 0
	if limit > 0 {
		items = max(limit, 16) / 2
	}

	var seqs []uint64
	if err := r.Envelopes(id, 0, items, func(e RelayEnvelope) error {
		seqs = append(seqs, e.Seq)
		return nil
	}); err != nil {
		return false, err
	}
	for _, s := range seqs {
		if _, err := r.DeleteEnvelope(id, s); err != nil {
			return false, err
		}
	}
	if items > 0 && len(seqs) == items {
		return false, nil
	}

	var prekeys [][]byte
	var size uint64
	err = r.tx.scanPrefix(key(tRelayPrekey, id[:]), false, func(k, v []byte) error {
		if len(k) != 1+32+8+8 {
			return fmt.Errorf("relay prekey key: %w", ErrCorrupt)
		}
		b, err := decodePrekeyBlob(v)
		if err != nil {
			return err
		}
		size += uint64(len(b))
		prekeys = append(prekeys, append([]byte(nil), k...))
		if items > 0 && len(prekeys) >= items {
			return errStop
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, k := range prekeys {
		if err := r.tx.del(k); err != nil {
			return false, err
		}
		if err := r.tx.del(key(tRelayPrekeyExp, k[33:41], id[:], k[41:])); err != nil {
			return false, err
		}
	}
	if len(prekeys) > 0 {
		if m, err = r.Mailbox(id); err != nil {
			return false, err
		}
		sub(&m.Prekeys, uint64(len(prekeys)))
		if err := r.chargeKeys(&m, -int64(size)); err != nil {
			return false, err
		}
		if err := r.putMailbox(&m); err != nil {
			return false, err
		}
		if err := r.changeTotals(func(tt *RelayTotals) {
			sub(&tt.Prekeys, uint64(len(prekeys)))
			sub(&tt.BlobBytes, size)
		}); err != nil {
			return false, err
		}
		if items > 0 && len(prekeys) == items {
			return false, nil
		}
	}

	var tokens []protocol.TokenHash
	if err := r.Tokens(id, func(t RelayToken) error {
		tokens = append(tokens, t.Hash)
		if items > 0 && len(tokens) >= items {
			return errStop
		}
		return nil
	}); err != nil {
		return false, err
	}
	for _, h := range tokens {
		if err := r.DeleteToken(id, h); err != nil {
			return false, err
		}
	}
	if items > 0 && len(tokens) == items {
		return false, nil
	}

	if err := r.tx.del(relayMailboxKey(id)); err != nil {
		return false, err
	}
	if err := r.changeQuotas(&m, -1, 0); err != nil {
		return false, err
	}
	if err := r.tx.del(key(tRelayDeleting, id[:])); err != nil {
		return false, err
	}
	return true, r.changeTotals(func(tt *RelayTotals) { sub(&tt.Mailboxes, 1) })
}

// Deleting returns the mailboxes whose deletion began and did not finish
// (a relay resumes them after a restart), at most limit (<= 0: all).
func (r Relay) Deleting(limit int) ([]protocol.MailboxID, error) {
	var out []protocol.MailboxID
	err := r.tx.scanPrefix([]byte{tRelayDeleting}, false, func(k, _ []byte) error {
		if len(k) != 1+32 {
			return fmt.Errorf("relay deleting index: %w", ErrCorrupt)
		}
		out = append(out, protocol.MailboxID(k[1:]))
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}
