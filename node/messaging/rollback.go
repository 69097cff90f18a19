package messaging

import (
	"errors"
	"time"

	"github.com/sealpost/sealpost/store"
)

// A store rolled back (store.Rollback): restored from an older copy of the
// home, or its latest writes lost. Every ratchet session in it is in an
// older state than the one its peer last saw, and sending in it again
// would use message keys already used. So before anything is sent the
// service ends every session (its peers' messages in them are answered
// unknown_session, and they encrypt those again in a new session) and
// clears each contact's active one: the next message to a contact starts a
// new session from its current bundle (PQXDH). It does that in the
// transaction that deletes the notice, so it happens once, and once for
// sure.

// RollbackNotice says what the service did about a rolled-back store.
type RollbackNotice struct {
	// DetectedAt is when the store was found behind.
	DetectedAt time.Time `json:"detected_at"`
	// Sessions is how many sessions were ended; Contacts how many
	// contacts had one (they get a new session with the next message).
	Sessions int `json:"sessions"`
	Contacts int `json:"contacts"`
}

// resetAfterRollback acts on the store's rollback notice in tx, if there
// is one, and returns what it did (nil: no notice).
func resetAfterRollback(tx *store.Tx) (*RollbackNotice, error) {
	r, err := tx.Rollback()
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n := &RollbackNotice{DetectedAt: r.DetectedAt}
	contacts, err := tx.Contacts().List()
	if err != nil {
		return nil, err
	}
	for _, c := range contacts {
		ss, err := tx.Sessions().List(c.UserID)
		if err != nil {
			return nil, err
		}
		for _, ses := range ss {
			if err := tx.Sessions().Delete(ses.Peer, ses.Device, ses.ID); err != nil {
				return nil, err
			}
		}
		n.Sessions += len(ss)
		if len(ss) > 0 {
			n.Contacts++
		}
		if c.Session != (store.SessionID{}) {
			c.Session = store.SessionID{}
			if err := tx.Contacts().Put(c); err != nil {
				return nil, err
			}
		}
	}
	return n, tx.DeleteRollback()
}

// Rollback returns what the service did, when it started, about a store
// that had rolled back, or nil.
func (s *Service) Rollback() *RollbackNotice { return s.rolledBack }
