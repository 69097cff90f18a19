package testnet

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sealpost/sealpost/node/messaging"
)

// textPrefix starts every scenario message; the number after it is the
// message's index in the plan.
const textPrefix = "testnet message "

// messageText is the text of scenario message i.
func messageText(i int, from, to string) string {
	return fmt.Sprintf("%s%d from %s to %s", textPrefix, i, from, to)
}

// parseIndex returns the index in a scenario message's text, or -1.
func parseIndex(text string) int {
	var i int
	if _, err := fmt.Sscanf(text, textPrefix+"%d", &i); err != nil {
		return -1
	}
	return i
}

// match returns the index of scenario message msg in member m's history,
// -1 for a message of the wiring, and whether recs has that message from
// its sender to m (false: a stray).
func match(recs []record, m *member, msg *messaging.Message) (int, bool) {
	if msg.Group != "" {
		return -1, true // a group message: counted by checkGroups
	}
	i := parseIndex(msg.Text)
	if i < 0 {
		return -1, true
	}
	ok := i < len(recs) && recs[i].to == m.index && msg.From == m.net.nodes[recs[i].from].uid
	return i, ok
}

// record is what the harness knows of one scenario message.
type record struct {
	from, to int
	start    time.Time // wall clock before Send
	// offline: the recipient was down when the message was sent.
	offline bool
	sent    bool
	id      string
	// shown counts the times the recipient's inbox showed the message
	// while the run went on; latency is that of the first.
	shown   int
	latency time.Duration
}

// ledger records the scenario's messages: sent by the harness, shown by
// the recipients' collectors.
type ledger struct {
	mu    sync.Mutex
	recs  []record
	sent  int
	first int // messages shown at least once
	// stray counts inbox messages that are no scenario message of this
	// recipient (none are expected).
	stray int
}

func newLedger(p *plan) *ledger {
	l := &ledger{recs: make([]record, len(p.msgs))}
	for i, m := range p.msgs {
		l.recs[i].from, l.recs[i].to = m.from, m.to
	}
	return l
}

func (l *ledger) sending(i int, offline bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs[i].start = time.Now()
	l.recs[i].offline = offline
}

func (l *ledger) sendDone(i int, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs[i].sent, l.recs[i].id = true, id
	l.sent++
}

// shown records that recipient m's inbox showed msg. The latency runs
// from the Send call (or, for a recipient that was down then, from its
// return) to the recipient's commit, on the harness's clock.
func (l *ledger) shown(m *member, msg *messaging.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := match(l.recs, m, msg)
	if !ok {
		l.stray++
		return
	}
	if i < 0 {
		return // a message of the wiring
	}
	r := &l.recs[i]
	r.shown++
	if r.shown > 1 {
		return
	}
	l.first++
	from := r.start
	if r.offline && m.back.After(from) {
		from = m.back
	}
	r.latency = max(0, msg.ReceivedAt.Add(-m.skew).Sub(from))
}

// counts returns the messages sent and shown so far.
func (l *ledger) counts() (sent, shown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.first
}

// Percentiles are latency percentiles in milliseconds, over Count
// messages.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Count int     `json:"count"`
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := min(len(ds)-1, int(q*float64(len(ds))))
		return float64(ds[i].Microseconds()) / 1000
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Count: len(ds)}
}

// latencies returns the percentiles of messages to recipients that were
// up when sent (direct) and down (via relays, or a retry after their
// return).
func (l *ledger) latencies() (direct, relayed Percentiles) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d, r []time.Duration
	for i := range l.recs {
		rec := &l.recs[i]
		if !rec.sent || rec.shown == 0 {
			continue
		}
		if rec.offline {
			r = append(r, rec.latency)
		} else {
			d = append(d, rec.latency)
		}
	}
	return percentiles(d), percentiles(r)
}

// allShown reports whether every sent message has been shown.
func (l *ledger) allShown() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.recs {
		if l.recs[i].sent && l.recs[i].shown == 0 {
			return false
		}
	}
	return true
}

// snapshot returns a copy of the records.
func (l *ledger) snapshot() []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]record(nil), l.recs...)
}

func (l *ledger) strays() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stray
}
