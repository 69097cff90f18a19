package relay

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// sweepBatch is the expired records one transaction of the sweep removes.
const sweepBatch = 512

// sweepLoop removes, every SweepInterval on the relay's clock, the
// envelopes and prekey batches that expired, and finishes mailbox
// deletions a restart interrupted. The value log of the store's badger is
// garbage-collected by the store itself after many deletions
// (badgerstore.Options.GCAfterDeletes) and on its timer.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	// Resume deletions first: a mailbox the owner deleted must go.
	s.resumeDeletions()
	t := s.clock.NewTimer(s.res.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		}
		if _, err := s.Sweep(s.ctx); err != nil && !errors.Is(err, ErrClosed) && s.ctx.Err() == nil {
			s.log.Error("relay: sweep", "err", err)
		}
		t.Reset(s.res.SweepInterval)
	}
}

// Sweep removes what expired by now (the relay's clock) and returns how
// many envelopes it removed. The relay runs it every SweepInterval.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		var n int
		err := s.do(ctx, 2*sweepBatch, func(tx *store.Tx, now time.Time) error {
			n = 0
			refs, err := tx.Relay().ExpiredEnvelopes(now, sweepBatch)
			if err != nil {
				return err
			}
			for _, r := range refs {
				if _, err := tx.Relay().DeleteEnvelope(r.Mailbox, r.Seq); err != nil {
					return err
				}
			}
			n = len(refs)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		s.met.expired.Add(float64(n))
		if n < sweepBatch {
			break
		}
	}
	for {
		var n int
		err := s.do(ctx, 2*sweepBatch, func(tx *store.Tx, now time.Time) error {
			var err error
			n, err = tx.Relay().ExpirePrekeys(now, sweepBatch)
			return err
		})
		if err != nil {
			return total, err
		}
		if n < sweepBatch {
			break
		}
	}
	return total, nil
}

// resumeDeletions finishes the mailbox deletions that were under way.
func (s *Server) resumeDeletions() {
	var ids []protocol.MailboxID
	err := s.st.View(s.ctx, func(tx *store.Tx) error {
		var err error
		ids, err = tx.Relay().Deleting(0)
		return err
	})
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("relay: list mailbox deletions", "err", err)
		}
		return
	}
	for _, id := range ids {
		if err := s.deleteMailbox(s.ctx, id); err != nil {
			if s.ctx.Err() == nil {
				s.log.Error("relay: resume mailbox deletion", "err", err)
			}
			return
		}
	}
}
