package store

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/protocol"
)

// The relay's group logs: the ciphertext log a relay keeps for a group it
// cannot identify, readable and appendable with an epoch's token, whose
// commits it orders (docs/PROTOCOL.md §12). Every count a quota check needs
// is kept in a record (the log's, the totals) and changed in the same
// transaction as the data it counts.
//
//	tRelayGroupLog     id(32)                 -> RelayGroupLog
//	tRelayGroupEpoch   id(32) epoch(8)        -> RelayGroupEpoch
//	tRelayGroupEntry   id(32) seq(8)          -> epoch, commit, stored-until, entry
//	tRelayGroupHash    id(32) SHA-256(32)     -> seq(8): the entries by content
//	tRelayGroupExpiry  until(8) id(32) seq(8) -> ""
//	tRelayGroupIdle    until(8) id(32)        -> "": when a log is deleted unless appended to
//	tRelayGroupTotals  (one key)              -> RelayGroupTotals
//
// An epoch's entries are the sequence numbers from the epoch's FirstSeq to
// its CommitSeq (or to the end while it is open): appends are accepted
// only to the open epoch, so epochs never interleave. An epoch's record
// (its token hash) goes when its commit expires, the epoch's last entry.

// Group log errors.
var (
	// ErrWrongEpoch: an append to an epoch that is not the log's open one
	// (another commit closed it), or a read of an epoch the log no longer
	// keeps (or never had).
	ErrWrongEpoch = errors.New("store: wrong epoch")
	// ErrNoGroupToken is the ErrNotFound of a token that is not the
	// epoch's (as opposed to a missing log).
	ErrNoGroupToken = fmt.Errorf("group log token: %w", ErrNotFound)
)

// MaxRelayGroupEntry bounds a stored group log entry
// (protocol.MaxGroupEntry).
const MaxRelayGroupEntry = protocol.MaxGroupEntry

// RelayGroupLog is a group log a relay holds for a group's members.
type RelayGroupLog struct {
	ID        protocol.GroupLogID
	CreatedAt time.Time
	// IdleUntil is when the relay deletes the log unless an append moves
	// it (the caller sets it on create and append).
	IdleUntil time.Time
	// Set by the store: Epoch is the open epoch; FirstEpoch the oldest one
	// whose record is kept; LastSeq the sequence number of the latest
	// entry; Count and Bytes the entries stored and their size; Deleting
	// that DeleteGroupLog began (the log accepts nothing more).
	Epoch      uint64
	FirstEpoch uint64
	LastSeq    uint64
	Count      uint64
	Bytes      uint64
	Deleting   bool
	// Quotas are the keys of the creator quotas the log counts against
	// (the relay's quotas of the peer and of the address range that
	// created it, as for mailboxes: RelayQuotaPeer, RelayQuotaSubnet;
	// zero: none), set at creation: the log counts in their GroupLogs
	// while it exists, its entries in their GroupBytes while stored. A log
	// stored before (version 1) counts in none.
	Quotas [2]RelayQuotaKey
}

// relayGroupLogVersion 2 adds Quotas.
const relayGroupLogVersion = 2

func (l *RelayGroupLog) marshal() []byte {
	e := newEnc(relayGroupLogVersion, 96)
	e.time(l.CreatedAt)
	e.time(l.IdleUntil)
	e.uvarint(l.Epoch)
	e.uvarint(l.FirstEpoch)
	e.uvarint(l.LastSeq)
	e.uvarint(l.Count)
	e.uvarint(l.Bytes)
	e.bool(l.Deleting)
	for _, q := range l.Quotas {
		e.fixed(q[:])
	}
	return e.b
}

func (l *RelayGroupLog) unmarshal(b []byte) error {
	d, v := newDec("relay group log", b, 1, relayGroupLogVersion)
	l.CreatedAt = d.time()
	l.IdleUntil = d.time()
	l.Epoch = d.uvarint()
	l.FirstEpoch = d.uvarint()
	l.LastSeq = d.uvarint()
	l.Count = d.uvarint()
	l.Bytes = d.uvarint()
	l.Deleting = d.bool()
	if v >= 2 {
		for i := range l.Quotas {
			d.fixed(l.Quotas[i][:])
		}
	}
	return d.finish("relay group log")
}

// RelayGroupEpoch is one epoch of a group log.
type RelayGroupEpoch struct {
	Epoch uint64
	// TokenHash is SHA-256 of the epoch's token.
	TokenHash protocol.TokenHash
	// FirstSeq is the sequence number the epoch's first entry has or will
	// have; CommitSeq the commit's that closed it (0 while it is open).
	FirstSeq  uint64
	CommitSeq uint64
	OpenedAt  time.Time
}

const relayGroupEpochVersion = 1

func (g *RelayGroupEpoch) marshal() []byte {
	e := newEnc(relayGroupEpochVersion, 64)
	e.fixed(g.TokenHash[:])
	e.uvarint(g.FirstSeq)
	e.uvarint(g.CommitSeq)
	e.time(g.OpenedAt)
	return e.b
}

func (g *RelayGroupEpoch) unmarshal(b []byte) error {
	d, _ := newDec("relay group epoch", b, relayGroupEpochVersion)
	d.fixed(g.TokenHash[:])
	g.FirstSeq = d.uvarint()
	g.CommitSeq = d.uvarint()
	g.OpenedAt = d.time()
	return d.finish("relay group epoch")
}

// RelayGroupEntry is one stored entry of a group log.
type RelayGroupEntry struct {
	Log protocol.GroupLogID
	Seq uint64
	// Epoch is the epoch it was appended to; Commit marks the commit that
	// closed it.
	Epoch       uint64
	Commit      bool
	StoredUntil time.Time
	Entry       []byte
}

const relayGroupEntryVersion = 1

func (g *RelayGroupEntry) marshal() []byte {
	e := newEnc(relayGroupEntryVersion, 32+len(g.Entry))
	e.uvarint(g.Epoch)
	e.bool(g.Commit)
	e.time(g.StoredUntil)
	e.bytes(g.Entry)
	return e.b
}

func (g *RelayGroupEntry) unmarshal(b []byte) error {
	d, _ := newDec("relay group entry", b, relayGroupEntryVersion)
	g.Epoch = d.uvarint()
	g.Commit = d.bool()
	g.StoredUntil = d.time()
	g.Entry = d.bytes(MaxRelayGroupEntry)
	return d.finish("relay group entry")
}

// RelayGroupTotals are the relay's counts over all group logs.
type RelayGroupTotals struct {
	Logs    uint64
	Entries uint64
	// Bytes is the size of the entries stored, which the relay's total
	// quota bounds together with the envelopes and blobs.
	Bytes uint64
}

const relayGroupTotalsVersion = 1

func (t *RelayGroupTotals) marshal() []byte {
	e := newEnc(relayGroupTotalsVersion, 30)
	e.uvarint(t.Logs)
	e.uvarint(t.Entries)
	e.uvarint(t.Bytes)
	return e.b
}

func (t *RelayGroupTotals) unmarshal(b []byte) error {
	d, _ := newDec("relay group totals", b, relayGroupTotalsVersion)
	t.Logs = d.uvarint()
	t.Entries = d.uvarint()
	t.Bytes = d.uvarint()
	return d.finish("relay group totals")
}

// RelayGroups is the relay's group log tables.
type RelayGroups struct{ tx *Tx }

// RelayGroups returns the relay's group log tables.
func (tx *Tx) RelayGroups() RelayGroups { return RelayGroups{tx} }

func relayGroupLogKey(id protocol.GroupLogID) []byte { return key(tRelayGroupLog, id[:]) }
func relayGroupEpochKey(id protocol.GroupLogID, epoch uint64) []byte {
	e := u64Key(epoch)
	return key(tRelayGroupEpoch, id[:], e[:])
}
func relayGroupEntryKey(id protocol.GroupLogID, seq uint64) []byte {
	s := u64Key(seq)
	return key(tRelayGroupEntry, id[:], s[:])
}
func relayGroupHashKey(id protocol.GroupLogID, h [32]byte) []byte {
	return key(tRelayGroupHash, id[:], h[:])
}
func relayGroupExpiryKey(until time.Time, id protocol.GroupLogID, seq uint64) []byte {
	t, s := timeKey(until), u64Key(seq)
	return key(tRelayGroupExpiry, t[:], id[:], s[:])
}
func relayGroupIdleKey(until time.Time, id protocol.GroupLogID) []byte {
	t := timeKey(until)
	return key(tRelayGroupIdle, t[:], id[:])
}

var relayGroupTotalsKey = []byte{tRelayGroupTotals}

// Totals returns the relay's group log totals (zero for none).
func (s RelayGroups) Totals() (RelayGroupTotals, error) {
	var t RelayGroupTotals
	_, err := s.tx.getRecord(relayGroupTotalsKey, &t)
	return t, err
}

func (s RelayGroups) changeTotals(fn func(t *RelayGroupTotals)) error {
	t, err := s.Totals()
	if err != nil {
		return err
	}
	fn(&t)
	return s.tx.set(relayGroupTotalsKey, t.marshal())
}

// Log returns log id, or ErrNotFound. A log being deleted is returned with
// Deleting set.
func (s RelayGroups) Log(id protocol.GroupLogID) (RelayGroupLog, error) {
	l := RelayGroupLog{ID: id}
	if ok, err := s.tx.getRecord(relayGroupLogKey(id), &l); err != nil || !ok {
		return l, cmp.Or(err, notFound("relay group log", id[:4]))
	}
	return l, nil
}

// live returns log id unless it is missing or being deleted (ErrNotFound).
func (s RelayGroups) live(id protocol.GroupLogID) (RelayGroupLog, error) {
	l, err := s.Log(id)
	if err == nil && l.Deleting {
		return l, notFound("relay group log", id[:4])
	}
	return l, err
}

func (s RelayGroups) putLog(l *RelayGroupLog) error {
	return s.tx.set(relayGroupLogKey(l.ID), l.marshal())
}

// setIdle moves log l's idle deadline to until, and its index with it.
func (s RelayGroups) setIdle(l *RelayGroupLog, until time.Time) error {
	if until.Equal(l.IdleUntil) {
		return nil
	}
	if err := s.tx.del(relayGroupIdleKey(l.IdleUntil, l.ID)); err != nil {
		return err
	}
	l.IdleUntil = until
	return s.tx.set(relayGroupIdleKey(until, l.ID), nil)
}

// Epoch returns epoch e of log id, or ErrWrongEpoch if the log keeps no
// such epoch (ErrNotFound if there is no log).
func (s RelayGroups) Epoch(id protocol.GroupLogID, e uint64) (RelayGroupEpoch, error) {
	g := RelayGroupEpoch{Epoch: e}
	ok, err := s.tx.getRecord(relayGroupEpochKey(id, e), &g)
	if err != nil || ok {
		return g, err
	}
	if _, err := s.Log(id); err != nil {
		return g, err
	}
	return g, fmt.Errorf("relay group log %x epoch %d: %w", id[:4], e, ErrWrongEpoch)
}

// CreateLog stores a new log, open at l.Epoch for the token whose hash is
// token (its counts start at zero whatever l holds; l.IdleUntil and
// l.Quotas are kept), and counts it in the GroupLogs of its quotas.
// ErrExists: the ID is taken.
func (s RelayGroups) CreateLog(l RelayGroupLog, token protocol.TokenHash) error {
	if l.ID == (protocol.GroupLogID{}) || token == (protocol.TokenHash{}) {
		return fmt.Errorf("relay group log: %w: zero ID or token hash", ErrInvalid)
	}
	ok, err := s.tx.exists(relayGroupLogKey(l.ID))
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("relay group log %x: %w", l.ID[:4], ErrExists)
	}
	l.FirstEpoch, l.LastSeq, l.Count, l.Bytes, l.Deleting = l.Epoch, 0, 0, 0, false
	g := RelayGroupEpoch{Epoch: l.Epoch, TokenHash: token, FirstSeq: 1, OpenedAt: l.CreatedAt}
	if err := s.tx.set(relayGroupEpochKey(l.ID, l.Epoch), g.marshal()); err != nil {
		return err
	}
	if err := s.tx.set(relayGroupIdleKey(l.IdleUntil, l.ID), nil); err != nil {
		return err
	}
	if err := s.putLog(&l); err != nil {
		return err
	}
	if err := s.tx.Relay().changeEach(l.Quotas, func(q *RelayQuota) { q.GroupLogs++ }); err != nil {
		return err
	}
	return s.changeTotals(func(t *RelayGroupTotals) { t.Logs++ })
}

// GroupAppend is one append to a group log.
type GroupAppend struct {
	Log   protocol.GroupLogID
	Epoch uint64
	// Token is SHA-256 of the token presented, which must be Epoch's.
	Token protocol.TokenHash
	// Commit closes Epoch and opens the next one for the token whose hash
	// is Next.
	Commit      bool
	Next        protocol.TokenHash
	Entry       []byte
	StoredUntil time.Time
	// IdleUntil is the log's new idle deadline.
	IdleUntil time.Time
	// Now is the time of the append (when the next epoch opened).
	Now time.Time
}

// Append stores a.Entry in log a.Log and returns it as stored, with its
// sequence number; dup reports an entry the log already held in that
// epoch (stored before by an append whose answer was lost), which is
// returned as it was stored, and for which nothing is written. In order:
// ErrNotFound (no such log, or it is being deleted); ErrWrongEpoch (the log
// keeps no epoch a.Epoch); ErrNoGroupToken (a.Token is not that epoch's);
// a duplicate; ErrWrongEpoch (a.Epoch is not the open epoch). check, if not
// nil, then sees the log and the totals as they are before the entry is
// added (what a quota check needs: the log's creator quotas are read with
// Relay.Quota of its Quotas); if it returns an error, nothing is written
// and Append returns that error. The entry counts in the GroupBytes of the
// log's quotas. The log's open epoch after the
// append is in the returned entry's log record: call Log.
func (s RelayGroups) Append(a GroupAppend, check func(l *RelayGroupLog, t *RelayGroupTotals) error) (e RelayGroupEntry, dup bool, err error) {
	if len(a.Entry) == 0 || len(a.Entry) > MaxRelayGroupEntry {
		return e, false, fmt.Errorf("relay group entry: %w: %d bytes", ErrInvalid, len(a.Entry))
	}
	if a.Commit && (a.Next == (protocol.TokenHash{}) || a.Epoch == ^uint64(0)) {
		return e, false, fmt.Errorf("relay group entry: %w: commit without a next epoch", ErrInvalid)
	}
	l, err := s.live(a.Log)
	if err != nil {
		return e, false, err
	}
	g, err := s.Epoch(a.Log, a.Epoch)
	if err != nil {
		return e, false, err
	}
	if subtle.ConstantTimeCompare(g.TokenHash[:], a.Token[:]) != 1 {
		return e, false, fmt.Errorf("relay group log %x epoch %d: %w", a.Log[:4], a.Epoch, ErrNoGroupToken)
	}
	h := sha256.Sum256(a.Entry)
	if b, err := s.tx.get(relayGroupHashKey(a.Log, h)); err == nil {
		if len(b) != 8 {
			return e, false, fmt.Errorf("relay group hash index: %w", ErrCorrupt)
		}
		old, err := s.Entry(a.Log, binary.BigEndian.Uint64(b))
		if err == nil && old.Epoch == a.Epoch {
			return old, true, nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return e, false, err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return e, false, err
	}
	if a.Epoch != l.Epoch {
		return e, false, fmt.Errorf("relay group log %x: epoch %d, open %d: %w", a.Log[:4], a.Epoch, l.Epoch, ErrWrongEpoch)
	}
	tot, err := s.Totals()
	if err != nil {
		return e, false, err
	}
	if check != nil {
		if err := check(&l, &tot); err != nil {
			return e, false, err
		}
	}
	n := uint64(len(a.Entry))
	l.LastSeq++
	l.Count++
	l.Bytes += n
	tot.Entries++
	tot.Bytes += n
	e = RelayGroupEntry{Log: a.Log, Seq: l.LastSeq, Epoch: a.Epoch, Commit: a.Commit, StoredUntil: a.StoredUntil, Entry: a.Entry}
	if err := s.tx.set(relayGroupEntryKey(a.Log, e.Seq), e.marshal()); err != nil {
		return e, false, err
	}
	if err := s.tx.set(relayGroupExpiryKey(e.StoredUntil, a.Log, e.Seq), nil); err != nil {
		return e, false, err
	}
	seq := u64Key(e.Seq)
	if err := s.tx.set(relayGroupHashKey(a.Log, h), seq[:]); err != nil {
		return e, false, err
	}
	if a.Commit {
		g.CommitSeq = e.Seq
		if err := s.tx.set(relayGroupEpochKey(a.Log, g.Epoch), g.marshal()); err != nil {
			return e, false, err
		}
		next := RelayGroupEpoch{Epoch: a.Epoch + 1, TokenHash: a.Next, FirstSeq: e.Seq + 1, OpenedAt: a.Now}
		if err := s.tx.set(relayGroupEpochKey(a.Log, next.Epoch), next.marshal()); err != nil {
			return e, false, err
		}
		l.Epoch = next.Epoch
	}
	if !a.IdleUntil.IsZero() {
		if err := s.setIdle(&l, a.IdleUntil); err != nil {
			return e, false, err
		}
	}
	if err := s.putLog(&l); err != nil {
		return e, false, err
	}
	if err := s.tx.Relay().changeEach(l.Quotas, func(q *RelayQuota) { add(&q.GroupBytes, int64(n)) }); err != nil {
		return e, false, err
	}
	return e, false, s.tx.set(relayGroupTotalsKey, tot.marshal())
}

// Entry returns entry seq of log id, or ErrNotFound.
func (s RelayGroups) Entry(id protocol.GroupLogID, seq uint64) (RelayGroupEntry, error) {
	e := RelayGroupEntry{Log: id, Seq: seq}
	if ok, err := s.tx.getRecord(relayGroupEntryKey(id, seq), &e); err != nil || !ok {
		return e, cmp.Or(err, notFound("relay group entry", seq))
	}
	return e, nil
}

// Entries calls fn for the entries of epoch e of log id with a sequence
// number above after, in order, at most limit of them (limit <= 0: all).
// ErrWrongEpoch: the log keeps no epoch e. Entries past their StoredUntil
// that the sweep has not removed yet are included; the caller skips them
// if it wants.
func (s RelayGroups) Entries(id protocol.GroupLogID, epoch, after uint64, limit int, fn func(e RelayGroupEntry) error) error {
	g, err := s.Epoch(id, epoch)
	if err != nil {
		return err
	}
	from := max(after, g.FirstSeq-1)
	if from == ^uint64(0) || (g.CommitSeq != 0 && from >= g.CommitSeq) {
		return nil
	}
	lo := relayGroupEntryKey(id, from+1)
	hi := prefixEnd(key(tRelayGroupEntry, id[:]))
	if g.CommitSeq != 0 {
		hi = relayGroupEntryKey(id, g.CommitSeq+1)
	}
	n := 0
	return s.tx.scan(lo, hi, false, func(k, v []byte) error {
		if len(k) != 1+32+8 {
			return fmt.Errorf("relay group entry key: %w", ErrCorrupt)
		}
		e := RelayGroupEntry{Log: id, Seq: binary.BigEndian.Uint64(k[33:])}
		if err := e.unmarshal(v); err != nil {
			return err
		}
		if e.Epoch != epoch {
			return fmt.Errorf("relay group entry %d of epoch %d in epoch %d's range: %w", e.Seq, e.Epoch, epoch, ErrCorrupt)
		}
		if err := fn(e); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return errStop
		}
		return nil
	})
}

// DeleteEntry removes entry seq of log id and takes it off the counts (the
// log's, its quotas', the totals); it reports whether there was one. Deleting an epoch's commit (its last
// entry) deletes the epoch's record too.
func (s RelayGroups) DeleteEntry(id protocol.GroupLogID, seq uint64) (bool, error) {
	e, err := s.Entry(id, seq)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	n := uint64(len(e.Entry))
	for _, k := range [][]byte{
		relayGroupEntryKey(id, seq),
		relayGroupExpiryKey(e.StoredUntil, id, seq),
		relayGroupHashKey(id, sha256.Sum256(e.Entry)),
	} {
		if err := s.tx.del(k); err != nil {
			return false, err
		}
	}
	if e.Commit {
		if err := s.tx.del(relayGroupEpochKey(id, e.Epoch)); err != nil {
			return false, err
		}
	}
	l, err := s.Log(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if err == nil {
		sub(&l.Count, 1)
		sub(&l.Bytes, n)
		if e.Commit && l.FirstEpoch <= e.Epoch {
			l.FirstEpoch = e.Epoch + 1
		}
		if err := s.putLog(&l); err != nil {
			return false, err
		}
		if err := s.tx.Relay().changeEach(l.Quotas, func(q *RelayQuota) { sub(&q.GroupBytes, n) }); err != nil {
			return false, err
		}
	}
	return true, s.changeTotals(func(t *RelayGroupTotals) {
		sub(&t.Entries, 1)
		sub(&t.Bytes, n)
	})
}

// GroupEntryRef names a stored group log entry.
type GroupEntryRef struct {
	Log protocol.GroupLogID
	Seq uint64
}

// ExpiredEntries returns up to limit entries whose StoredUntil is not after
// now, earliest first (limit <= 0: all).
func (s RelayGroups) ExpiredEntries(now time.Time, limit int) ([]GroupEntryRef, error) {
	keys, err := s.tx.expired(tRelayGroupExpiry, now, limit, 1+8+32+8, "relay group expiry index")
	out := make([]GroupEntryRef, len(keys))
	for i, k := range keys {
		out[i] = GroupEntryRef{Log: protocol.GroupLogID(k[9:41]), Seq: binary.BigEndian.Uint64(k[41:])}
	}
	return out, err
}

// IdleLogs returns up to limit logs whose IdleUntil is not after now
// (limit <= 0: all), to be deleted with DeleteLog.
func (s RelayGroups) IdleLogs(now time.Time, limit int) ([]protocol.GroupLogID, error) {
	keys, err := s.tx.expired(tRelayGroupIdle, now, limit, 1+8+32, "relay group idle index")
	out := make([]protocol.GroupLogID, len(keys))
	for i, k := range keys {
		out[i] = protocol.GroupLogID(k[9:41])
	}
	return out, err
}

// DeleteLog deletes log id and everything it holds, about limit records
// per call (limit <= 0: all; at least 16), so that a large log is deleted
// in transactions of a bounded size. The first call marks the log
// Deleting (it then accepts nothing); call again until done is true. A
// missing log is done.
func (s RelayGroups) DeleteLog(id protocol.GroupLogID, limit int) (done bool, err error) {
	l, err := s.Log(id)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !l.Deleting {
		l.Deleting = true
		if err := s.putLog(&l); err != nil {
			return false, err
		}
	}
	// Each entry takes three deletions, and a commit a fourth.
	items := 0
	if limit > 0 {
		items = max(limit, 16) / 4
	}
	var seqs []uint64
	err = s.tx.scanPrefix(key(tRelayGroupEntry, id[:]), false, func(k, _ []byte) error {
		if len(k) != 1+32+8 {
			return fmt.Errorf("relay group entry key: %w", ErrCorrupt)
		}
		seqs = append(seqs, binary.BigEndian.Uint64(k[33:]))
		if items > 0 && len(seqs) >= items {
			return errStop
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, seq := range seqs {
		if _, err := s.DeleteEntry(id, seq); err != nil {
			return false, err
		}
	}
	if items > 0 && len(seqs) == items {
		return false, nil
	}
	var epochs [][]byte
	if err := s.tx.scanPrefix(key(tRelayGroupEpoch, id[:]), false, func(k, _ []byte) error {
		epochs = append(epochs, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return false, err
	}
	for _, k := range epochs {
		if err := s.tx.del(k); err != nil {
			return false, err
		}
	}
	if err := s.tx.del(relayGroupIdleKey(l.IdleUntil, id)); err != nil {
		return false, err
	}
	if err := s.tx.del(relayGroupLogKey(id)); err != nil {
		return false, err
	}
	if err := s.tx.Relay().changeEach(l.Quotas, func(q *RelayQuota) { sub(&q.GroupLogs, 1) }); err != nil {
		return false, err
	}
	return true, s.changeTotals(func(t *RelayGroupTotals) { sub(&t.Logs, 1) })
}
