package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
)

// A personal node's groups (node/groups): the group records, each group's
// MLS state, the engine's durable work per group, the group requests and
// controls that arrived from contacts, and per-member delivery of the
// messages this node sent to a group. The group's messages themselves are
// Messages with Group set (messages.go).
//
//	tGroup            group(32)                    -> Group
//	tGroupState       group(32)                    -> the MLS state (crypto/mls), its first part
//	tGroupStateMore   group(32) part(2)            -> its parts after the first, in order
//	tGroupStateKeys   group(32)                    -> the MLS keys that moved since the state was written
//	tGroupWork        group(32) kind(1) n(8)       -> GroupWork
//	tGroupWork        group(32) 0 kind(1)          -> the last n AddWork gave the kind
//	tGroupInbox       n(8)                         -> GroupInboxEntry
//	tGroupDelivery    message(16) member(32)       -> delivered time (zero: pending)
//	tGroupUndelivered group(32) member(32) msg(16) -> "": the pending rows by member
//	tMessageByGroup   group(32) order(8)           -> message(16)

// GroupState is where this node stands in a group.
type GroupState uint8

const (
	// GroupActive: a member.
	GroupActive GroupState = 1
	// GroupRequest: invited by a contact not accepted; waiting for the
	// user to accept or decline.
	GroupRequest GroupState = 2
	// GroupJoining: accepted (or invited by an accepted contact); the
	// KeyPackage went to the inviter, the Welcome is awaited.
	GroupJoining GroupState = 3
	// GroupLeaving: a member that asked to be removed; an admin's client
	// commits it.
	GroupLeaving GroupState = 4
	// GroupLeft: no longer a member (left or removed); the history stays.
	GroupLeft GroupState = 5
)

func (s GroupState) valid() bool { return s >= GroupActive && s <= GroupLeft }

// String returns the state's name as the CLI and API show it.
func (s GroupState) String() string {
	switch s {
	case GroupActive:
		return "active"
	case GroupRequest:
		return "request"
	case GroupJoining:
		return "joining"
	case GroupLeaving:
		return "leaving"
	case GroupLeft:
		return "left"
	}
	return fmt.Sprintf("GroupState(%d)", uint8(s))
}

// Limits of group records.
const (
	// MaxGroupState bounds a stored MLS group state (crypto/mls's
	// marshalled state of a group at its largest, pending commit included).
	MaxGroupState = 128 << 20
	// groupStatePart is the size of the parts a state is stored in: one
	// record holds at most MaxValueSize, and a group of 1,000 members with
	// a commit and its Welcome pending takes more (its tree alone about
	// 1.6 MB with the post-quantum suite).
	groupStatePart = MaxValueSize / 2
	// MaxGroupWork bounds one work item of the group engine.
	MaxGroupWork = 64 << 20
	// MaxGroupInboxEntry bounds a control that arrived from a contact.
	MaxGroupInboxEntry = 64 << 10
)

// GroupHomeCursor is a group's log on one home relay and how far this node
// has read it.
type GroupHomeCursor struct {
	Relay []byte // peer ID
	Addrs [][]byte
	Log   protocol.GroupLogID
	// Cursor is the sequence number of the last entry processed.
	Cursor uint64
}

// Group is a group this node is in, was invited to, or left.
type Group struct {
	ID    protocol.GroupID
	Name  string
	State GroupState
	// Inviter is who invited this node (zero for the creator).
	Inviter identity.UserID
	// Epoch, Members and Admin (this node is an admin) mirror the MLS
	// state, for listing without loading it.
	Epoch   uint64
	Members uint32
	Admin   bool
	Homes   []GroupHomeCursor
	// SendSeq is the sequence number of this node's last message to the
	// group.
	SendSeq uint64
	// Reason says why the node left (State GroupLeft).
	Reason    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

const groupVersion = 1

func (g *Group) validate() error {
	switch {
	case g.ID.IsZero():
		return fmt.Errorf("group: %w: zero ID", ErrInvalid)
	case !g.State.valid():
		return fmt.Errorf("group: %w: state %d", ErrInvalid, g.State)
	case len(g.Name) > protocol.MaxName || len(g.Reason) > MaxReasonLen:
		return fmt.Errorf("group: %w: field too long", ErrInvalid)
	case len(g.Homes) > protocol.MaxHomeRelays:
		return fmt.Errorf("group: %w: %d home relays", ErrInvalid, len(g.Homes))
	}
	for _, h := range g.Homes {
		if len(h.Relay) > protocol.MaxPeerID || len(h.Addrs) > protocol.MaxMailboxAddrs {
			return fmt.Errorf("group: %w: home relay", ErrInvalid)
		}
		for _, a := range h.Addrs {
			if len(a) > protocol.MaxAddr {
				return fmt.Errorf("group: %w: home relay address", ErrInvalid)
			}
		}
	}
	return nil
}

func (g *Group) marshal() []byte {
	e := newEnc(groupVersion, 256)
	e.fixed(g.ID[:])
	e.str(g.Name)
	e.u8(uint8(g.State))
	e.fixed(g.Inviter[:])
	e.uvarint(g.Epoch)
	e.uvarint(uint64(g.Members))
	e.bool(g.Admin)
	e.uvarint(uint64(len(g.Homes)))
	for _, h := range g.Homes {
		e.bytes(h.Relay)
		e.uvarint(uint64(len(h.Addrs)))
		for _, a := range h.Addrs {
			e.bytes(a)
		}
		e.fixed(h.Log[:])
		e.uvarint(h.Cursor)
	}
	e.uvarint(g.SendSeq)
	e.str(g.Reason)
	e.time(g.CreatedAt)
	e.time(g.UpdatedAt)
	return e.b
}

func (g *Group) unmarshal(b []byte) error {
	d, _ := newDec("group", b, groupVersion)
	d.fixed(g.ID[:])
	g.Name = d.str(protocol.MaxName)
	g.State = GroupState(d.u8())
	d.fixed(g.Inviter[:])
	g.Epoch = d.uvarint()
	g.Members = d.u32()
	g.Admin = d.bool()
	n := d.count(protocol.MaxHomeRelays, 34)
	g.Homes = make([]GroupHomeCursor, n)
	for i := range g.Homes {
		h := &g.Homes[i]
		h.Relay = d.bytes(protocol.MaxPeerID)
		h.Addrs = make([][]byte, d.count(protocol.MaxMailboxAddrs, 1))
		for j := range h.Addrs {
			h.Addrs[j] = d.bytes(protocol.MaxAddr)
		}
		d.fixed(h.Log[:])
		h.Cursor = d.uvarint()
	}
	g.SendSeq = d.uvarint()
	g.Reason = d.str(MaxReasonLen)
	g.CreatedAt = d.time()
	g.UpdatedAt = d.time()
	if err := d.finish("group"); err != nil {
		return err
	}
	if !g.State.valid() {
		return fmt.Errorf("decode group: %w: state %d", ErrCorrupt, g.State)
	}
	return nil
}

// GroupWorkKind says what a work item of the group engine is. The engine
// encodes the item's Data; the store keeps the items of a group in order,
// per kind. Kind 0 is none (AddWork and PutWork refuse it).
type GroupWorkKind uint8

// GroupWork is one durable item of the group engine's work for a group
// (entries to append and publish, membership changes to commit, Welcomes
// to deliver, a KeyPackage's private keys kept for a Welcome): written in
// the transaction that creates the need, deleted in the one that finishes
// it, so that a restart resumes it.
type GroupWork struct {
	Group protocol.GroupID
	Kind  GroupWorkKind
	// N orders the items of one group and kind; the store assigns it on
	// Add.
	N    uint64
	Data []byte
}

func groupWorkKey(g protocol.GroupID, kind GroupWorkKind, n uint64) []byte {
	k := u64Key(n)
	return key(tGroupWork, g[:], []byte{byte(kind)}, k[:])
}

// groupWorkLastKey is the row of the last N AddWork gave group g's kind:
// kind 0 is no kind, so the row is in no kind's range of items, and it
// goes with the group's work when the group is deleted.
func groupWorkLastKey(g protocol.GroupID, kind GroupWorkKind) []byte {
	return key(tGroupWork, g[:], []byte{0, byte(kind)})
}

// GroupInboxEntry is a group control that arrived from a contact, kept
// until the group engine has handled it.
type GroupInboxEntry struct {
	N    uint64 // assigned by Add
	From identity.UserID
	// Accepted is whether From was an accepted contact when it arrived.
	Accepted bool
	// Control is the encoded protocol.GroupControl (its Plaintext wrapper
	// stripped: a KindGroup Plaintext's Group field).
	Control    []byte
	ReceivedAt time.Time
}

const groupInboxVersion = 1

func (e *GroupInboxEntry) marshal() []byte {
	w := newEnc(groupInboxVersion, 64+len(e.Control))
	w.fixed(e.From[:])
	w.bool(e.Accepted)
	w.bytes(e.Control)
	w.time(e.ReceivedAt)
	return w.b
}

func (e *GroupInboxEntry) unmarshal(b []byte) error {
	d, _ := newDec("group inbox entry", b, groupInboxVersion)
	d.fixed(e.From[:])
	e.Accepted = d.bool()
	e.Control = d.bytes(MaxGroupInboxEntry)
	e.ReceivedAt = d.time()
	return d.finish("group inbox entry")
}

const groupInboxCounter = "store.group.inbox"

// Groups is the table of a personal node's groups.
type Groups struct{ tx *Tx }

// Groups returns the group tables.
func (tx *Tx) Groups() Groups { return Groups{tx} }

// Get returns group id, or ErrNotFound.
func (s Groups) Get(id protocol.GroupID) (Group, error) {
	var g Group
	b, err := s.tx.get(key(tGroup, id[:]))
	if errors.Is(err, ErrNotFound) {
		return g, notFound("group", id)
	}
	if err != nil {
		return g, err
	}
	err = g.unmarshal(b)
	return g, err
}

// Put creates or replaces a group record.
func (s Groups) Put(g *Group) error {
	if err := g.validate(); err != nil {
		return err
	}
	return s.tx.set(key(tGroup, g.ID[:]), g.marshal())
}

// List returns every group, by ID.
func (s Groups) List() ([]Group, error) {
	var out []Group
	err := s.tx.scanPrefix([]byte{tGroup}, false, func(_, v []byte) error {
		var g Group
		if err := g.unmarshal(v); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	return out, err
}

// State returns the MLS state of group id, or ErrNotFound.
func (s Groups) State(id protocol.GroupID) ([]byte, error) {
	b, err := s.tx.get(key(tGroupState, id[:]))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound("group state", id)
	}
	if err != nil {
		return nil, err
	}
	want := uint16(1)
	err = s.tx.scanPrefix(key(tGroupStateMore, id[:]), false, func(k, v []byte) error {
		if len(k) != 1+32+2 || binary.BigEndian.Uint16(k[33:]) != want || len(b)+len(v) > MaxGroupState {
			return fmt.Errorf("group state: %w: part %x", ErrCorrupt, k[33:])
		}
		want++
		b = append(b, v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// PutState stores the MLS state of group id, in parts of groupStatePart
// bytes.
func (s Groups) PutState(id protocol.GroupID, state []byte) error {
	if len(state) == 0 || len(state) > MaxGroupState {
		return fmt.Errorf("group state: %w: %d bytes", ErrInvalid, len(state))
	}
	first := min(len(state), groupStatePart)
	if err := s.tx.set(key(tGroupState, id[:]), state[:first]); err != nil {
		return err
	}
	part := uint16(1)
	for rest := state[first:]; len(rest) > 0; part++ {
		n := min(len(rest), groupStatePart)
		if err := s.tx.set(key(tGroupStateMore, id[:], binary.BigEndian.AppendUint16(nil, part)), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	if err := s.deleteStateParts(id, part); err != nil {
		return err
	}
	return s.tx.del(key(tGroupStateKeys, id[:]))
}

// StateKeys returns the MLS keys of group id written after its state
// (PutStateKeys), or ErrNotFound.
func (s Groups) StateKeys(id protocol.GroupID) ([]byte, error) {
	b, err := s.tx.get(key(tGroupStateKeys, id[:]))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound("group state keys", id)
	}
	return b, err
}

// PutStateKeys stores the MLS keys of group id that moved since its state
// was written (crypto/mls MarshalKeys), at most MaxValueSize bytes; the
// next PutState deletes them.
func (s Groups) PutStateKeys(id protocol.GroupID, keys []byte) error {
	if len(keys) == 0 || len(keys) > MaxValueSize {
		return fmt.Errorf("group state keys: %w: %d bytes", ErrInvalid, len(keys))
	}
	if _, err := s.tx.get(key(tGroupState, id[:])); err != nil {
		return fmt.Errorf("group state keys: %w", err)
	}
	return s.tx.set(key(tGroupStateKeys, id[:]), keys)
}

// deleteStateParts deletes the parts of group id's state from the part
// numbered from on.
func (s Groups) deleteStateParts(id protocol.GroupID, from uint16) error {
	lo := key(tGroupStateMore, id[:], binary.BigEndian.AppendUint16(nil, from))
	return s.tx.delRange(lo, prefixEnd(key(tGroupStateMore, id[:])))
}

// DeleteState deletes the MLS state of group id (the node left: what it
// held of the group's secrets goes).
func (s Groups) DeleteState(id protocol.GroupID) error {
	if err := s.deleteStateParts(id, 1); err != nil {
		return err
	}
	if err := s.tx.del(key(tGroupStateKeys, id[:])); err != nil {
		return err
	}
	return s.tx.del(key(tGroupState, id[:]))
}

// Delete deletes group id with its state and work (a declined request);
// its messages, if any, stay.
func (s Groups) Delete(id protocol.GroupID) error {
	if err := s.DeleteState(id); err != nil {
		return err
	}
	work := key(tGroupWork, id[:])
	if err := s.tx.delRange(work, prefixEnd(work)); err != nil {
		return err
	}
	return s.tx.del(key(tGroup, id[:]))
}

// AddWork appends a work item for w.Group of kind w.Kind; N is assigned
// (one more than the last N it assigned to the kind) and returned.
//
// The last N is a row of its own, read with one lookup: the items are
// written and deleted all the time (a receipt owed for every message
// received), and finding the last of them by a scan walks every deleted
// item the store has not compacted away yet. A store written before the
// row (or a kind's first item) finds it by that scan once.
func (s Groups) AddWork(w GroupWork) (uint64, error) {
	if len(w.Data) > MaxGroupWork || w.Kind == 0 {
		return 0, fmt.Errorf("group work: %w: kind %d, %d bytes", ErrInvalid, w.Kind, len(w.Data))
	}
	last, err := s.lastWork(w.Group, w.Kind)
	if err != nil {
		return 0, err
	}
	w.N = last + 1
	n := u64Key(w.N)
	if err := s.tx.set(groupWorkLastKey(w.Group, w.Kind), n[:]); err != nil {
		return 0, err
	}
	return w.N, s.tx.set(groupWorkKey(w.Group, w.Kind, w.N), w.Data)
}

// lastWork returns the last N AddWork assigned to group g's kind.
func (s Groups) lastWork(g protocol.GroupID, kind GroupWorkKind) (uint64, error) {
	b, err := s.tx.get(groupWorkLastKey(g, kind))
	switch {
	case err == nil && len(b) == 8:
		return binary.BigEndian.Uint64(b), nil
	case err == nil:
		return 0, fmt.Errorf("group work: last n of %d bytes: %w", len(b), ErrCorrupt)
	case !errors.Is(err, ErrNotFound):
		return 0, err
	}
	var last uint64
	prefix := key(tGroupWork, g[:], []byte{byte(kind)})
	err = s.tx.scanPrefix(prefix, true, func(k, _ []byte) error {
		last = binary.BigEndian.Uint64(k[len(k)-8:])
		return errStop
	})
	return last, err
}

// PutWork replaces the data of an existing work item (or writes one at a
// chosen N). A kind's items are either added (AddWork) or put at chosen
// Ns: AddWork counts from the last N it gave, not from what PutWork wrote.
func (s Groups) PutWork(w GroupWork) error {
	if len(w.Data) > MaxGroupWork || w.N == 0 || w.Kind == 0 {
		return fmt.Errorf("group work: %w", ErrInvalid)
	}
	return s.tx.set(groupWorkKey(w.Group, w.Kind, w.N), w.Data)
}

// Work returns up to limit work items of group g and kind, in order
// (limit <= 0: all).
func (s Groups) Work(g protocol.GroupID, kind GroupWorkKind, limit int) ([]GroupWork, error) {
	var out []GroupWork
	prefix := key(tGroupWork, g[:], []byte{byte(kind)})
	err := s.tx.scanPrefix(prefix, false, func(k, v []byte) error {
		if len(k) != len(prefix)+8 {
			return fmt.Errorf("group work key: %w", ErrCorrupt)
		}
		out = append(out, GroupWork{Group: g, Kind: kind, N: binary.BigEndian.Uint64(k[len(prefix):]), Data: append([]byte(nil), v...)})
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// DeleteWork deletes one work item; a missing one is not an error.
func (s Groups) DeleteWork(g protocol.GroupID, kind GroupWorkKind, n uint64) error {
	return s.tx.del(groupWorkKey(g, kind, n))
}

// AddInbox keeps a control that arrived; N is assigned.
func (s Groups) AddInbox(e GroupInboxEntry) error {
	if len(e.Control) == 0 || len(e.Control) > MaxGroupInboxEntry {
		return fmt.Errorf("group inbox: %w: %d bytes", ErrInvalid, len(e.Control))
	}
	n, err := s.tx.Counters().Next(groupInboxCounter)
	if err != nil {
		return err
	}
	k := u64Key(n)
	return s.tx.set(key(tGroupInbox, k[:]), e.marshal())
}

// Inbox returns up to limit controls that arrived, oldest first.
func (s Groups) Inbox(limit int) ([]GroupInboxEntry, error) {
	var out []GroupInboxEntry
	err := s.tx.scanPrefix([]byte{tGroupInbox}, false, func(k, v []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("group inbox key: %w", ErrCorrupt)
		}
		var e GroupInboxEntry
		if err := e.unmarshal(v); err != nil {
			return err
		}
		e.N = binary.BigEndian.Uint64(k[1:])
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// DeleteInbox deletes a handled control.
func (s Groups) DeleteInbox(n uint64) error {
	k := u64Key(n)
	return s.tx.del(key(tGroupInbox, k[:]))
}

// AddRecipients records that message id, sent to group g, waits for the
// delivery receipts of members.
func (s Groups) AddRecipients(g protocol.GroupID, id protocol.MessageID, members []identity.UserID) error {
	var zero [12]byte
	for _, m := range members {
		if err := s.tx.set(key(tGroupDelivery, id[:], m[:]), zero[:]); err != nil {
			return err
		}
		if err := s.tx.set(key(tGroupUndelivered, g[:], m[:], id[:]), nil); err != nil {
			return err
		}
	}
	return nil
}

// Delivered records member's receipt for message id of group g. It
// reports whether the receipt was new (the member was pending).
func (s Groups) Delivered(g protocol.GroupID, id protocol.MessageID, member identity.UserID, at time.Time) (bool, error) {
	k := key(tGroupUndelivered, g[:], member[:], id[:])
	ok, err := s.tx.exists(k)
	if err != nil || !ok {
		return false, err
	}
	if err := s.tx.del(k); err != nil {
		return false, err
	}
	return true, s.tx.set(key(tGroupDelivery, id[:], member[:]), deliveryTime(at))
}

func deliveryTime(t time.Time) []byte {
	e := newEnc(1, 12)
	e.time(t)
	return e.b[1:]
}

// GroupDelivery is one member's delivery of a message sent to a group.
type GroupDelivery struct {
	Member identity.UserID
	// At is when the member's receipt arrived; zero while pending.
	At time.Time
}

// Deliveries returns the members message id was sent to and when each
// received it (zero: pending; a member removed since is no longer listed).
func (s Groups) Deliveries(id protocol.MessageID) ([]GroupDelivery, error) {
	var out []GroupDelivery
	prefix := key(tGroupDelivery, id[:])
	err := s.tx.scanPrefix(prefix, false, func(k, v []byte) error {
		if len(k) != len(prefix)+32 {
			return fmt.Errorf("group delivery key: %w", ErrCorrupt)
		}
		d := GroupDelivery{Member: identity.UserID(k[len(prefix):])}
		if !allZeroBytes(v) {
			dd := &dec{b: v}
			d.At = dd.time()
			if dd.err != nil {
				return fmt.Errorf("group delivery: %w", ErrCorrupt)
			}
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// Pending reports whether message id still waits for a member's receipt.
func (s Groups) Pending(g protocol.GroupID, id protocol.MessageID) (bool, error) {
	found := false
	err := s.tx.scanPrefix(key(tGroupDelivery, id[:]), false, func(k, v []byte) error {
		if allZeroBytes(v) {
			found = true
			return errStop
		}
		return nil
	})
	return found, err
}

// DropMember forgets the pending deliveries of member to group g (it was
// removed: a message it will never read no longer waits for it) and returns
// up to limit of the messages it touched (limit <= 0: all), so that their
// state can be checked again.
func (s Groups) DropMember(g protocol.GroupID, member identity.UserID, limit int) ([]protocol.MessageID, error) {
	var ids []protocol.MessageID
	prefix := key(tGroupUndelivered, g[:], member[:])
	err := s.tx.scanPrefix(prefix, false, func(k, _ []byte) error {
		if len(k) != len(prefix)+16 {
			return fmt.Errorf("group delivery index: %w", ErrCorrupt)
		}
		ids = append(ids, protocol.MessageID(k[len(prefix):]))
		if limit > 0 && len(ids) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := s.tx.del(key(tGroupUndelivered, g[:], member[:], id[:])); err != nil {
			return nil, err
		}
		if err := s.tx.del(key(tGroupDelivery, id[:], member[:])); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func allZeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
