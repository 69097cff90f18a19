package groups

import (
	"fmt"
	"slices"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/crypto/mls"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// commitChanges makes one commit of the membership changes that wait (and
// of the proposals received), unless one is on its way or a Welcome of
// the last one is not in the first home's log yet (the commit would close
// its epoch there). A Welcome still on its way to a second home does not
// hold it: that home is best effort, and one that fails would hold every
// change for its tries.
func (g *group) commitChanges() {
	if g.mg == nil || !g.mg.Active() || g.committing || !g.changesDue ||
		slices.ContainsFunc(g.welcomes, func(w *welcomeItem) bool { return !w.onFirstHome() }) {
		return
	}
	g.changesDue = false
	var items []store.GroupWork
	err := g.s.st.View(g.s.ctx, func(tx *store.Tx) error {
		var err error
		items, err = tx.Groups().Work(g.id, workChange, 0)
		return err
	})
	if err != nil || len(items) == 0 {
		return
	}
	admin := g.isAdmin() || g.s.opt.BreakRules
	meta := *g.meta
	meta.Admins = slices.Clone(meta.Admins)
	metaChanged := false
	var (
		opts    mls.CommitOptions
		joiners []identity.UserID
		ns      []uint64
		addN    []uint64 // the changes of opts.Add, in its order
		done    []uint64 // changes with nothing left to do
		adding  = map[identity.UserID]bool{}
		removal = map[identity.UserID]bool{}
		update  bool // a key update asked for: the commit has a path
	)
	for _, w := range items {
		var c change
		if decodeWork(w.Data, &c) != nil {
			done = append(done, w.N)
			continue
		}
		if !admin && c.Op != changeUpdate && c.Op != changeCommit {
			done = append(done, w.N) // no longer an admin
			continue
		}
		used := false
		switch c.Op {
		case changeAdd:
			kp, err := mls.ParseKeyPackage(c.KeyPackage)
			if err != nil || kp.CipherSuite() != g.mg.CipherSuite() {
				break
			}
			who, err := memberOf(kp.Credential())
			if err != nil || validateCredential(kp.Credential(), kp.SignatureKey(), nil) != nil {
				break
			}
			if _, in := g.members[who.user]; in || adding[who.user] {
				break
			}
			if len(g.members)+len(adding)+1 > MaxMembers {
				g.s.log.Warn("group: full, an add waits", "group", g.id.String())
				continue
			}
			adding[who.user] = true
			opts.Add = append(opts.Add, kp)
			joiners = append(joiners, who.user)
			addN = append(addN, w.N)
			used = true
		case changeRemove:
			for _, u := range c.Users {
				m, in := g.members[u]
				if !in || u == g.s.self || removal[u] {
					continue
				}
				removal[u] = true
				opts.Remove = append(opts.Remove, m.leaf)
				used = true
				if i := slices.Index(meta.Admins, u); i >= 0 {
					meta.Admins = slices.Delete(meta.Admins, i, i+1)
					metaChanged = true
				}
			}
		case changePromote:
			for _, u := range c.Users {
				if _, in := g.members[u]; !in || meta.IsAdmin(u) || len(meta.Admins) >= protocol.MaxGroupAdmins {
					continue
				}
				meta.Admins = append(meta.Admins, u)
				metaChanged, used = true, true
			}
		case changeUpdate:
			used, update = true, true
		case changeCommit:
			used = g.proposals > 0
		}
		if used {
			ns = append(ns, w.N)
		} else {
			done = append(done, w.N)
		}
	}
	// An admin leaving (its own Remove proposal) leaves the admins too.
	for u := range g.leaving {
		if i := slices.Index(meta.Admins, u); i >= 0 && len(meta.Admins) > 1 {
			meta.Admins = slices.Delete(meta.Admins, i, i+1)
			metaChanged = true
		}
	}
	b := g.newBatch()
	gid := g.id
	if len(done) > 0 {
		b.fn = append(b.fn, func(tx *store.Tx) error {
			for _, n := range done {
				if err := tx.Groups().DeleteWork(gid, workChange, n); err != nil {
					return err
				}
			}
			return nil
		})
		if len(ns) == 0 {
			g.commitQueued = false
		}
	}
	if len(ns) == 0 {
		g.flush(b)
		return
	}
	if metaChanged && len(meta.Admins) > 0 {
		exts, err := metaExtensions(&meta)
		if err == nil {
			opts.Extensions, opts.SetExtensions = exts, true
		}
	}
	// A commit of adds only has no path (MLS allows it: the joiners'
	// secrets go in the Welcome). With one, the committer encrypts a
	// secret to each node of its copath's resolution: in a group whose
	// members have not committed yet, to nearly every member (a 1,000-member
	// group's commit of one add took 1.2 MB and as many X-Wing
	// encapsulations, against 3 KB for the KeyPackage).
	opts.NoPath = !update
	msg, err := g.mg.Commit(opts, g.s.clock.Now(), g.s.rand())
	// A commit carries its adds' KeyPackages (some 3 KB each in the
	// post-quantum suite) and must fit one log entry: over it, half the
	// adds wait for the next commit, until it fits.
	for err == nil && len(msg) > protocol.MaxGroupBody && len(opts.Add) > 1 {
		g.mg.DiscardPendingCommit()
		keep := len(opts.Add) / 2
		for _, n := range addN[keep:] {
			ns = slices.DeleteFunc(ns, func(x uint64) bool { return x == n })
		}
		opts.Add, joiners, addN = opts.Add[:keep], joiners[:keep], addN[:keep]
		msg, err = g.mg.Commit(opts, g.s.clock.Now(), g.s.rand())
	}
	if err == nil && len(msg) > protocol.MaxGroupBody {
		g.mg.DiscardPendingCommit()
		err = fmt.Errorf("a commit of %d bytes, over the %d of a log entry", len(msg), protocol.MaxGroupBody)
	}
	if err != nil {
		g.s.log.Warn("group: commit refused locally; its changes are dropped", "group", g.id.String(), "err", err)
		b.fn = append(b.fn, func(tx *store.Tx) error {
			for _, n := range ns {
				if err := tx.Groups().DeleteWork(gid, workChange, n); err != nil {
					return err
				}
			}
			return nil
		})
		g.commitQueued = false
		g.flush(b)
		return
	}
	next, err := g.mg.ExportPending(protocol.GroupTokenLabel, nil, protocol.GroupTokenSize)
	if err != nil {
		g.mg.DiscardPendingCommit()
		return
	}
	g.committing = true
	g.s.log.Debug("group: commit", "group", g.id.String(), "epoch", g.mg.Epoch(), "bytes", len(msg),
		"adds", len(opts.Add), "removes", len(opts.Remove))
	b.state = true
	g.addOut(b, outEntry{Epoch: g.mg.Epoch(), Kind: protocol.GroupCommit, Body: msg,
		Next: protocol.GroupToken(next).Hash(), Changes: ns, Joiners: joiners})
	g.flush(b)
}
