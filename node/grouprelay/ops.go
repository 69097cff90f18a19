package grouprelay

import (
	"context"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/sealpost/sealpost/node/internal/jobs"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// submit queues j for the writer (node/internal/jobs: group commit, in
// order, so two commits for one epoch are ordered as they arrived).
func (s *Server) submit(ctx context.Context, j *jobs.Job) error {
	err := s.w.Submit(ctx, j)
	if errors.Is(err, jobs.ErrClosed) {
		return ErrClosed
	}
	return err
}

// refusal is a check's answer, told apart from a store error.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// create makes the log req.Log, open at req.Epoch for req.TokenHash,
// counting in the creator quotas q. Creating it again with the same epoch
// and token hash is a retry.
func (s *Server) create(ctx context.Context, req *protocol.GroupLogRequest, q [2]store.RelayQuotaKey) (*protocol.GroupLogResponse, error) {
	id := req.Log
	var refused error
	created := false
	j := &jobs.Job{Fn: func(tx *store.Tx, now time.Time) error {
		refused, created = nil, false
		l, err := tx.RelayGroups().Log(id)
		switch {
		case err == nil:
			// An existing log: a retry, answered whatever the quotas.
			refused = protocol.ErrDuplicate
			if l.Deleting || l.Epoch != req.Epoch {
				return nil
			}
			e, err := tx.RelayGroups().Epoch(id, req.Epoch)
			if err != nil {
				return err
			}
			if e.TokenHash == req.TokenHash {
				refused = nil
			}
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		t, err := tx.RelayGroups().Totals()
		if err != nil {
			return err
		}
		if t.Logs >= s.res.MaxLogs {
			refused = protocol.ErrStoreFull
			return nil
		}
		if err := s.checkCreate(tx, q); err != nil {
			if _, ok := err.(quotaRefusal); ok {
				refused = err
				return nil
			}
			return err
		}
		err = tx.RelayGroups().CreateLog(store.RelayGroupLog{ID: id, CreatedAt: now, IdleUntil: s.idleUntil(now), Epoch: req.Epoch, Quotas: q}, req.TokenHash)
		created = err == nil
		return err
	}}
	if err := s.submit(ctx, j); err != nil {
		return nil, err
	}
	if err := j.Wait(); err != nil {
		return nil, err
	}
	if refused != nil {
		s.refused(refused)
		return nil, refused
	}
	if created {
		s.met.created.Inc()
	}
	return &protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Log: id, Epoch: req.Epoch}, nil
}

// pendingAppend is an append on its way: checked and stored by the writer,
// then answered in its stream's order.
type pendingAppend struct {
	c    *stream
	req  *protocol.GroupLogRequest
	job  jobs.Job
	resp protocol.GroupLogResponse // set by the job
	err  error                     // a refusal, set by the job
	dup  bool                      // stored before, set by the job
}

// Ready reports whether the append's commit is done (writeq.Item).
func (a *pendingAppend) Ready() bool { return a.job.Ready() }

// Append appends the append's answer, once its commit is done
// (writeq.Item).
func (a *pendingAppend) Append(buf []byte) ([]byte, error) {
	err := a.job.Wait()
	if err == nil {
		err = a.err
	}
	if err == nil {
		return protocol.AppendFrame(buf, &a.resp)
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, jobs.ErrClosed) {
		err = protocol.ErrInternal
	}
	code := protocol.CodeOf(err)
	a.c.s.met.reject(code.String())
	a.c.s.refused(err)
	r := &protocol.GroupLogResponse{ID: a.req.ID, Op: a.req.Op, Code: code}
	if code == protocol.CodeWrongEpoch {
		r.Epoch = a.resp.Epoch
	}
	return protocol.AppendFrame(buf, r)
}

// startAppend checks what needs no store and queues the append for the
// writer; the caller waits with finish. A refusal known at once is
// returned as the error. The append came in a frame of held bytes
// reserved on c: they are released once its transaction ends (with the
// entry, which its answer does not need), or at once if it is refused
// here.
func (s *Server) startAppend(c *stream, req *protocol.GroupLogRequest, held int) (a *pendingAppend, err error) {
	defer func() {
		if err != nil {
			c.release(held)
		}
	}()
	switch {
	case len(req.Entry) > s.res.MaxEntry:
		return nil, protocol.ErrTooLarge
	case s.appends.Take(c.connID, 1) != 1:
		return nil, protocol.ErrRateLimited
	}
	a = &pendingAppend{c: c, req: req}
	n := uint64(len(req.Entry))
	token := req.Token.Hash()
	a.job = jobs.Job{Weight: 1 + len(req.Entry)>>10}
	a.job.Fn = func(tx *store.Tx, now time.Time) error {
		a.err, a.dup, a.resp = nil, false, protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK}
		// Responses carry milliseconds; store what they say.
		until := now.Add(s.res.TTL).Truncate(time.Millisecond)
		e, dup, err := tx.RelayGroups().Append(store.GroupAppend{
			Log: req.Log, Epoch: req.Epoch, Token: token, Commit: req.Commit, Next: req.TokenHash,
			Entry: req.Entry, StoredUntil: until, IdleUntil: s.idleUntil(now), Now: now,
		}, func(l *store.RelayGroupLog, t *store.RelayGroupTotals) error {
			if l.Count+1 > s.res.LogMaxCount || l.Bytes+n > s.res.LogMaxBytes {
				return refusal{protocol.ErrQuotaExceeded}
			}
			if err := s.checkBytes(tx, l, n); err != nil {
				return err
			}
			switch {
			case t.Bytes+n > s.res.StoreMaxBytes:
				return refusal{protocol.ErrStoreFull}
			case req.Commit && s.commits.Take(req.Log, 1) != 1:
				// Checked here, after the epoch: a commit that lost costs
				// the log nothing. (A transaction the backend retries takes
				// a second token; the rate is a bound, not a count.)
				return refusal{protocol.ErrRateLimited}
			}
			return nil
		})
		var r refusal
		var qr quotaRefusal
		switch {
		case errors.As(err, &qr):
			a.err = qr
		case err == nil && dup:
			// Stored before (a retry whose answer was lost): the same
			// answer, with the open epoch as it is now.
			a.dup = true
			a.resp.Seq, a.resp.StoredUntil = e.Seq, e.StoredUntil.UnixMilli()
			l, err := tx.RelayGroups().Log(req.Log)
			if err != nil {
				return err
			}
			a.resp.Epoch = l.Epoch
		case err == nil:
			a.resp.Seq, a.resp.StoredUntil, a.resp.Epoch = e.Seq, e.StoredUntil.UnixMilli(), e.Epoch
			if e.Commit {
				a.resp.Epoch++
			}
		case errors.As(err, &r):
			a.err = r.err
		case errors.Is(err, store.ErrWrongEpoch):
			a.err = protocol.ErrWrongEpoch
			if l, lerr := tx.RelayGroups().Log(req.Log); lerr == nil {
				a.resp = protocol.GroupLogResponse{ID: req.ID, Op: req.Op, Epoch: l.Epoch}
			}
		case errors.Is(err, store.ErrNoGroupToken):
			a.err = protocol.ErrTokenRefused
		case errors.Is(err, store.ErrNotFound):
			a.err = protocol.ErrUnknownLog
		default:
			return err
		}
		return nil
	}
	a.job.After = func() {
		if a.err == nil && !a.dup {
			s.met.appended(len(req.Entry), req.Commit)
			s.notify(req.Log, req.Epoch, a.resp.Seq, req.Commit)
		}
	}
	a.job.Release = func() {
		req.Entry = nil
		c.release(held)
	}
	if err := s.submit(c.ctx, &a.job); err != nil {
		return nil, err
	}
	return a, nil
}

// errPageFull stops a page read.
var errPageFull = errors.New("grouprelay: page full")

// pageEntries bounds the entries one read of a fetch holds in memory.
const pageEntries = 64

// readPage reads up to n entries of an epoch after seq after, whose
// pushes cost (pushCost) at most room bytes in all and whose entries hold
// at most bytes, skipping those past their stored-until. It checks the
// token and returns the log's open epoch; more reports entries left
// unread.
func (s *Server) readPage(ctx context.Context, req *protocol.GroupLogRequest, after uint64, n, room, bytes int) (page []store.RelayGroupEntry, open uint64, more bool, err error) {
	n = min(n, pageEntries)
	token := req.Token.Hash()
	err = s.cfg.Store.View(ctx, func(tx *store.Tx) error {
		page, more = page[:0], false
		if err := s.checkRead(tx, req, token, &open); err != nil {
			return err
		}
		now := s.clock.Now()
		size, held := 0, 0
		err := tx.RelayGroups().Entries(req.Log, req.Epoch, after, 0, func(e store.RelayGroupEntry) error {
			if !e.StoredUntil.After(now) {
				return nil // expired; the sweep removes it
			}
			cost := pushCost(len(e.Entry))
			if len(page) >= n || size+cost > room || held+len(e.Entry) > bytes {
				more = true
				return errPageFull
			}
			page = append(page, e)
			size += cost
			held += len(e.Entry)
			return nil
		})
		if errors.Is(err, errPageFull) {
			err = nil
		}
		return err
	})
	return page, open, more, readError(err)
}

// checkRead checks that the log is live and that token is the hash of
// req.Epoch's token, and sets open to the log's open epoch.
func (s *Server) checkRead(tx *store.Tx, req *protocol.GroupLogRequest, token protocol.TokenHash, open *uint64) error {
	l, err := tx.RelayGroups().Log(req.Log)
	if err != nil {
		return err
	}
	if l.Deleting {
		return store.ErrNotFound
	}
	*open = l.Epoch
	g, err := tx.RelayGroups().Epoch(req.Log, req.Epoch)
	if err != nil {
		return err
	}
	if !tokenEqual(g.TokenHash, token) {
		return store.ErrNoGroupToken
	}
	return nil
}

// tokenEqual compares two token hashes in constant time.
func tokenEqual(a, b protocol.TokenHash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// readError translates a store error of a read into its wire sentinel.
func readError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNoGroupToken):
		return protocol.ErrTokenRefused
	case errors.Is(err, store.ErrWrongEpoch):
		return protocol.ErrWrongEpoch
	case errors.Is(err, store.ErrNotFound):
		return protocol.ErrUnknownLog
	}
	return err
}
