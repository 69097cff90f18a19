package groups

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/internal/metricset"
)

// metrics are the engine's Prometheus collectors. No label names a group
// or a member: reasons are a fixed set.
type metrics struct {
	*metricset.Set

	sent      prometheus.Counter
	received  prometheus.Counter
	commits   *prometheus.CounterVec // own commits: accepted, refused (another won the epoch)
	dropped   *prometheus.CounterVec // messages dropped, by reason
	fetched   prometheus.Counter
	groups    prometheus.Gauge
	duplicate prometheus.Counter
	logResets prometheus.Counter
	receipts  *prometheus.CounterVec // receipts sent, by way: direct, group
	// receiptFails are the tries to send receipts straight to their
	// sender that failed (tried again; through the group once the sender
	// has failed long enough).
	receiptFails prometheus.Counter
	// catchUps counts the catch-ups of a lagging home, by result: done,
	// given_up; catchUpEntries the entries they copied.
	catchUps       *prometheus.CounterVec
	catchUpEntries prometheus.Counter
	// appendFails are failed appends to home relays, by code (the relay's
	// wire code, or unreachable); homesFailing the homes of running
	// groups whose appends failed HomeFailsShown rounds in a row.
	appendFails  *prometheus.CounterVec
	homesFailing prometheus.Gauge
	// stateWrites count the writes of a group's MLS state, whole or its
	// keys, by why (stateChange, stateKeys, stateDeferred); stateBytes
	// their bytes.
	stateWrites *prometheus.CounterVec
	stateBytes  prometheus.Counter
}

// Why a group's MLS state is written (sealpost_groups_state_writes_total).
const (
	// stateChange: the whole state, with a change that must be durable
	// with it (a commit, a proposal, an entry encrypted again, a join).
	stateChange = "change"
	// stateKeys: only the keys application messages moved, with what
	// must be durable with them: this member's own message (its sender
	// ratchet, before the message leaves), or the group's record.
	stateKeys = "keys"
	// stateDeferred: only the keys messages of others used, written
	// within Options.StateEvery.
	stateDeferred = "deferred"
)

// Reasons a message is dropped.
const (
	dropMalformed = "malformed"  // not a GroupMessage, or content that does not decode
	dropAuth      = "auth"       // MLS refused it (authentication, wrong group)
	dropRefused   = "refused"    // the group's policy refused a proposal or commit
	dropEpoch     = "epoch"      // an epoch no longer kept, or too far ahead
	dropNotMember = "not_member" // a commit or proposal from a topic (taken from the log only)
	dropEvicted   = "evicted"    // MLS gave up its key before it arrived: lost for this member
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_sent_total", Help: "Group messages this node sent (stored on a home relay and published).",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_received_total", Help: "Group messages of others committed (texts, files, receipts).",
		}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_groups_commits_total",
			Help: "This node's commits, by outcome: accepted, refused because another commit won the epoch (then made again), or rate_limited by the home relay's commit rate (then retried).",
		}, []string{"outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_groups_dropped_total",
			Help: "Group messages and receipts dropped, by reason (malformed, auth, refused, epoch, not_member, evicted).",
		}, []string{"reason"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_fetched_total", Help: "Log entries fetched from home relays.",
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealpost_groups", Help: "Groups this node is in."}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_duplicates_total", Help: "Group messages received again (skipped before decryption, or by message ID).",
		}),
		logResets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_log_resets_total",
			Help: "Moves of a group to new logs because a home relay closed an epoch with a commit the group's rules refuse.",
		}),
		receiptFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_receipt_failures_total",
			Help: "Tries to send delivery receipts straight to their sender's device that failed (refused, or out of reach); they are tried again, and go through the group once the sender has failed for 30 receipt delays.",
		}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_groups_receipts_total",
			Help: "Delivery receipts this node sent, by way: direct (to the sender's device), group (through the group: the sender was out of reach).",
		}, []string{"way"}),
		catchUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_groups_home_catchups_total",
			Help: "Home relays this node found behind the group's epoch (down through commits) and copied the epochs they missed, by result: done, given_up (this node holds no token of an epoch they missed, or the first home no longer keeps it).",
		}, []string{"result"}),
		catchUpEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_groups_home_catchup_entries_total", Help: "Log entries copied to lagging home relays (duplicates they held included).",
		}),
	}
	m.appendFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealpost_groups_append_failures_total", Help: "Appends to home relays that failed, by code (the relay's answer: internal, rate_limited, ...; or unreachable); wrong_epoch and unknown_log, answers of a home that works, are not counted.",
	}, []string{"code"})
	m.homesFailing = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sealpost_groups_homes_failing", Help: "Home relays of this node's groups (one per group and home) whose appends failed many rounds in a row (shown in the group's relays).",
	})
	m.stateWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealpost_groups_state_writes_total", Help: "Writes of a group's MLS state, by why: change (the whole state: with a commit, a proposal, an entry encrypted again, or in place of keys that cannot be written alone), keys (only the keys application messages moved, with an own message or the group's record), deferred (only the keys others' messages used, written within StateEvery).",
	}, []string{"why"})
	m.stateBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sealpost_groups_state_bytes_total", Help: "Bytes of the MLS states and keys written (sealpost_groups_state_writes_total); a whole state grows with its group's size.",
	})
	set, err := metricset.Register(reg, m.sent, m.received, m.commits, m.dropped, m.fetched, m.groups, m.duplicate, m.logResets, m.receipts, m.receiptFails, m.catchUps, m.catchUpEntries, m.appendFails, m.homesFailing, m.stateWrites, m.stateBytes)
	if err != nil {
		return nil, err
	}
	m.Set = set
	return m, nil
}

func (m *metrics) unregister() { m.Unregister() }
