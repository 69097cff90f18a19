package groups

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// The engine's durable work per group (store.GroupWork), one kind each.
// Each item is written in the transaction that creates the need and
// deleted in the one that finishes it, so a restart resumes it.
const (
	// workOut: an entry to append to the home relays and publish.
	workOut store.GroupWorkKind = 1
	// workChange: a membership change to commit (admins; an update by
	// anyone).
	workChange store.GroupWorkKind = 2
	// workWelcome: a Welcome to put in the log and announce to the
	// members it adds.
	workWelcome store.GroupWorkKind = 3
	// workKeyPackage: the private keys of the KeyPackage this node sent
	// its inviter, kept until the Welcome.
	workKeyPackage store.GroupWorkKind = 4
	// workInvite: a contact invited (an admin's), waiting for its
	// KeyPackage.
	workInvite store.GroupWorkKind = 5
	// workReceipt: IDs of a member's messages committed here, waiting for
	// the next delivery receipt to that member.
	workReceipt store.GroupWorkKind = 6
	// workToken: the log token of a past epoch (N is the epoch + 1), kept
	// for keptTokens epochs to catch a lagging home up (relays.go). (7
	// is workJoin, join.go.)
	workToken store.GroupWorkKind = 8
	// workLag: a second home known to lag or down (N is its index + 1),
	// to catch up from the epoch it holds (lagWork), kept until the
	// catch-up is done: the entries that gave the home up are no longer
	// queued, so a member restarted before it still makes it (relays.go).
	workLag store.GroupWorkKind = 9
)

// lagWork is a workLag item.
type lagWork struct {
	Open uint64 `json:"open"`
}

// outEntry is a workOut item.
type outEntry struct {
	Epoch uint64             `json:"epoch"`
	Kind  protocol.GroupKind `json:"kind"`
	Body  []byte             `json:"body"`
	// Plain is the application content, to encrypt again (same message
	// ID) when the epoch closed before the entry was appended.
	Plain []byte `json:"plain,omitempty"`
	// Message is the ID of the message the entry carries (texts, files);
	// zero for receipts, proposals and commits.
	Message protocol.MessageID `json:"message,omitzero"`
	// Seqs are the entry's sequence numbers on each home (0: not yet).
	Seqs []uint64 `json:"seqs"`
	// Next is SHA-256 of the next epoch's token (commits).
	Next protocol.TokenHash `json:"next,omitzero"`
	// Changes are the workChange items a commit carries out.
	Changes []uint64 `json:"changes,omitempty"`
	// Welcome is set on a commit that adds members: their user IDs.
	Joiners  []identity.UserID `json:"joiners,omitempty"`
	Attempts int               `json:"attempts,omitempty"`
}

// Membership changes (workChange).
const (
	changeAdd     = "add"     // KeyPackage: add its device
	changeRemove  = "remove"  // Users: remove them
	changePromote = "promote" // Users: make them admins
	changeUpdate  = "update"  // a commit with a fresh path of this member's own
	changeCommit  = "commit"  // commit the proposals received (a leave)
)

type change struct {
	Op         string            `json:"op"`
	Users      []identity.UserID `json:"users,omitempty"`
	KeyPackage []byte            `json:"key_package,omitempty"`
}

// welcomeJob is a workWelcome item.
type welcomeJob struct {
	Epoch   uint64              `json:"epoch"`
	Token   protocol.GroupToken `json:"token"`
	Pieces  [][]byte            `json:"pieces"`
	Joiners []identity.UserID   `json:"joiners"`
	// Done counts, per home, the pieces appended.
	Done []int `json:"done"`
}

// invite is a workInvite item.
type invite struct {
	User identity.UserID `json:"user"`
	At   time.Time       `json:"at"`
}

// receiptWork is a workReceipt item: the IDs of messages of member To
// (zero in items stored before receipts went to the sender: they go
// through the group).
type receiptWork struct {
	To     identity.UserID      `json:"to,omitzero"`
	Covers []protocol.MessageID `json:"covers"`
}

func encodeWork(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("groups: encode work: %v", err)) // only plain structs
	}
	return b
}

func decodeWork(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("groups: stored work: %w", err)
	}
	return nil
}
