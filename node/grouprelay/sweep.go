package grouprelay

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/node/internal/clock"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// sweepBatch is the records one transaction of the sweep removes.
const sweepBatch = 512

// sweepLoop runs Sweep every SweepInterval on the service's clock.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	clock.Tick(s.ctx, s.clock, s.res.SweepInterval, func() {
		if _, err := s.Sweep(s.ctx); err != nil && !errors.Is(err, ErrClosed) && s.ctx.Err() == nil {
			s.log.Error("grouprelay: sweep", "err", err)
		}
	})
}

// Sweep removes the entries whose TTL ended by now (the service's clock),
// and the logs idle past their deadline, in transactions of a bounded size
// through the writer; it returns how many entries it removed.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		var n int
		err := s.w.Do(ctx, sweepBatch, func(tx *store.Tx, now time.Time) error {
			n = 0
			refs, err := tx.RelayGroups().ExpiredEntries(now, sweepBatch/4)
			if err != nil {
				return err
			}
			for _, r := range refs {
				if _, err := tx.RelayGroups().DeleteEntry(r.Log, r.Seq); err != nil {
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
		if n < sweepBatch/4 {
			break
		}
	}
	var idle []protocol.GroupLogID
	if err := s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		var err error
		idle, err = tx.RelayGroups().IdleLogs(s.clock.Now(), sweepBatch)
		return err
	}); err != nil {
		return total, err
	}
	for _, id := range idle {
		for done := false; !done; {
			err := s.w.Do(ctx, sweepBatch, func(tx *store.Tx, now time.Time) error {
				// An append may have moved the deadline since the read.
				l, err := tx.RelayGroups().Log(id)
				if errors.Is(err, store.ErrNotFound) {
					done = true
					return nil
				}
				if err != nil {
					return err
				}
				if l.IdleUntil.After(now) && !l.Deleting {
					done = true
					return nil
				}
				done, err = tx.RelayGroups().DeleteLog(id, sweepBatch)
				return err
			})
			if err != nil {
				return total, err
			}
		}
		s.met.idle.Inc()
	}
	return total, nil
}
