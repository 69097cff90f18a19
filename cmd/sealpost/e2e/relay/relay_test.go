// Package relay_test runs the sealpost binary as real processes on
// 127.0.0.1: community relays (daemon --relay-service) and personal nodes
// that receive through them (relays add). It checks offline delivery, a
// relay killed right after its custody receipts, redundancy over two
// relays, what a relay's disk and logs reveal, and the relay's refusals.
package relay_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/e2e/harness"
)

var bin *harness.Binary

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }

// msg is the part of an `inbox --json` line these tests read.
type msg struct {
	ID    string `json:"id"`
	From  string `json:"from"`
	Text  string `json:"text"`
	Seq   uint64 `json:"seq"`
	State string `json:"state"`
}

type idJSON struct {
	UserID string   `json:"user_id"`
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	Relays []string `json:"relays"`
}

// node is one daemon with its home.
type node struct {
	t    *testing.T
	name string
	home *harness.Home
	d    *harness.Daemon
	args []string
	id   idJSON
}

// newNode initializes a home named name (the display name too), of the
// test profile unless args name another.
func newNode(t *testing.T, name string, args ...string) *node {
	n := &node{t: t, name: name, home: bin.Home(t)}
	n.home.Init(append([]string{"--name", name}, args...)...)
	return n
}

// newRelay initializes a relay's home: the relay profile, whose store is
// not encrypted at rest (it holds sealed envelopes only), so that what it
// holds is there to be searched.
func newRelay(t *testing.T, name string) *node { return newNode(t, name, "--profile", "relay") }

// start starts the daemon with args (kept for restarts).
func (n *node) start(args ...string) {
	n.t.Helper()
	if args != nil {
		n.args = args
	}
	n.d = n.home.Start(append([]string{"--no-mdns"}, n.args...)...)
	n.home.JSON(&n.id, "id")
}

// stop stops the daemon with sig and waits.
func (n *node) stop(sig syscall.Signal) {
	n.t.Helper()
	n.d.Stop(sig)
}

// addr is the daemon's loopback TCP address with /p2p/.
func (n *node) addr() string {
	n.t.Helper()
	for _, a := range n.id.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a
		}
	}
	n.t.Fatalf("%s has no loopback TCP address: %v", n.name, n.id.Addrs)
	return ""
}

// startRelay starts a relay on a fixed port (so that it comes back on the
// same address after a restart).
func startRelay(t *testing.T, name string) *node {
	r := newRelay(t, name)
	r.start("--relay-service", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", harness.FreePort(t)))
	return r
}

// startPersonal starts a personal node that bootstraps through relay
// (nil: through no one; contacts then connect through their invites'
// addresses).
func startPersonal(t *testing.T, name string, relay *node) *node {
	n := newNode(t, name)
	args := []string{"--listen", "/ip4/127.0.0.1/tcp/0"}
	if relay != nil {
		args = append(args, "--bootstrap", relay.addr())
	}
	n.start(args...)
	return n
}

// observe adds the peers the relay is connected to now to seen.
func (n *node) observe(seen map[string]bool) {
	n.t.Helper()
	var ps struct {
		Peers []struct {
			PeerID string `json:"peer_id"`
		} `json:"peers"`
	}
	n.home.JSON(&ps, "peers", "ls")
	for _, p := range ps.Peers {
		seen[p.PeerID] = true
	}
}

// inbox reads `inbox --json`.
func (n *node) inbox() []msg {
	n.t.Helper()
	r := n.home.Run("--json", "inbox")
	if r.Code != 0 {
		return nil
	}
	return harness.DecodeLines[msg](n.t, r.Stdout)
}

// befriend makes s a contact of r through an invite of r's (r online).
func befriend(t *testing.T, s, r *node, name string) {
	t.Helper()
	var inv struct {
		Link string `json:"link"`
	}
	r.home.JSON(&inv, "invite")
	t.Logf("invite link of %d characters", len(inv.Link))
	s.home.MustRun("contact", "add", inv.Link, "--name", name)
}

// sendOffline sends n messages from s to contact name and waits until each
// is sent (held by a relay).
func sendMany(t *testing.T, s *node, name, prefix string, n int) []string {
	t.Helper()
	var texts []string
	for i := 1; i <= n; i++ {
		text := fmt.Sprintf("%s %02d", prefix, i)
		texts = append(texts, text)
		s.home.MustRun("send", name, text)
	}
	var last struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	s.home.JSON(&last, "send", name, prefix+" last", "--wait", "sent", "--timeout", "30s")
	return append(texts, prefix+" last")
}

// checkAll checks that got holds exactly texts, once each, in order.
func checkAll(t *testing.T, got []msg, texts []string) {
	t.Helper()
	if len(got) != len(texts) {
		t.Fatalf("received %d messages, want %d", len(got), len(texts))
	}
	seen := map[string]bool{}
	for i, m := range got {
		if seen[m.ID] {
			t.Errorf("message %s received twice", m.ID)
		}
		seen[m.ID] = true
		if m.Text != texts[i] {
			t.Errorf("message %d is %q, want %q", i, m.Text, texts[i])
		}
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Errorf("message %d has seq %d after %d", i, m.Seq, got[i-1].Seq)
		}
	}
}

// received waits until r's inbox holds want messages, then until nothing
// more can arrive: every message s sent to contact shows delivered (s
// deposits none again) and r's relays report holding nothing (r fetched
// and acknowledged all that was deposited); it returns r's inbox then, so
// a message shown twice is in it.
func received(t *testing.T, s *node, contact string, r *node, want int) []msg {
	t.Helper()
	harness.Eventually(t, 30*time.Second, fmt.Sprintf("%s received %d messages", r.name, want), func() bool {
		return len(r.inbox()) >= want
	})
	var ls struct {
		Relays []struct {
			Stored uint64 `json:"stored"`
		} `json:"relays"`
	}
	harness.Eventually(t, 30*time.Second, "every message delivered and the relays empty", func() bool {
		res := s.home.Run("--json", "messages", contact)
		if res.Code != 0 {
			return false
		}
		type sent struct {
			State    string `json:"state"`
			Outgoing bool   `json:"outgoing"`
		}
		for _, m := range harness.DecodeLines[sent](t, res.Stdout) {
			if m.Outgoing && m.State != "delivered" && m.State != "read" {
				return false
			}
		}
		r.home.JSON(&ls, "relays", "ls")
		for _, x := range ls.Relays {
			if x.Stored != 0 {
				return false
			}
		}
		return true
	})
	return r.inbox()
}

// TestOfflineDelivery: R receives through a relay, gives S an invite and
// stops; S sends 50 messages; R starts and receives all, in order, once.
// Then the relay's disk and log are searched for what it must not know,
// and the peers it served on mailbox streams for the devices' peer IDs.
//
// Both nodes use the relay as their bootstrap peer, as users do, so their
// devices' peer IDs are among the relay's connections (the test checks
// that): what must hold is that none of them ever opened a mailbox stream.
func TestOfflineDelivery(t *testing.T) {
	relay := startRelay(t, "relay")
	s := startPersonal(t, "sender-sam", relay)
	r := startPersonal(t, "recipient-rita", relay)
	connected := map[string]bool{}
	r.home.MustRun("relays", "add", relay.addr())
	relay.observe(connected)
	befriend(t, s, r, "rita-contact")
	relay.observe(connected)
	r.stop(syscall.SIGTERM)

	texts := sendMany(t, s, "rita-contact", "offline-plaintext", 50)
	relay.observe(connected)

	start := time.Now()
	r.start()
	got := received(t, s, "rita-contact", r, len(texts))
	relay.observe(connected)
	t.Logf("%d messages received %v after the recipient started", len(got), time.Since(start).Round(time.Millisecond))
	checkAll(t, got, texts)
	for _, m := range got {
		if m.From != s.id.UserID {
			t.Fatalf("message from %s, want %s", m.From, s.id.UserID)
		}
	}
	for _, dev := range []*node{s, r} {
		if !connected[dev.id.PeerID] {
			t.Errorf("%s's device %s never showed among the relay's peers: it does not bootstrap through the relay", dev.name, dev.id.PeerID)
		}
	}
	checkMailboxPeers(t, relay, []*node{s, r})
	relay.stop(syscall.SIGTERM)
	checkBlind(t, relay, []*node{s, r}, texts, []string{"sender-sam", "recipient-rita", "rita-contact"})
}

// checkMailboxPeers reads the peers the relay served on mailbox streams
// (`relay peers`): owners and depositors must both be there, and no peer
// of any list may be one of the devices.
func checkMailboxPeers(t *testing.T, relay *node, devices []*node) {
	t.Helper()
	type seen struct {
		PeerID string `json:"peer_id"`
	}
	var p struct {
		Streams    []seen `json:"streams"`
		Owners     []seen `json:"owners"`
		Depositors []seen `json:"depositors"`
	}
	relay.home.JSON(&p, "relay", "peers")
	t.Logf("the relay served %d peers on mailbox streams: %d owners, %d depositors", len(p.Streams), len(p.Owners), len(p.Depositors))
	if len(p.Owners) == 0 || len(p.Depositors) == 0 || len(p.Streams) == 0 {
		t.Fatalf("relay peers lists %d streams, %d owners, %d depositors; want some of each", len(p.Streams), len(p.Owners), len(p.Depositors))
	}
	for what, l := range map[string][]seen{"streams": p.Streams, "owners": p.Owners, "depositors": p.Depositors} {
		for _, x := range l {
			for _, d := range devices {
				if x.PeerID == d.id.PeerID {
					t.Errorf("the relay served %s's device %s on a mailbox stream (%s)", d.name, d.id.PeerID, what)
				}
			}
		}
	}
}

// TestRelayKilledAfterReceipts: the relay is SIGKILLed right after it
// issued its custody receipts and restarted: nothing is lost.
func TestRelayKilledAfterReceipts(t *testing.T) {
	relay := startRelay(t, "relay")
	s := startPersonal(t, "sender", relay)
	r := startPersonal(t, "recipient", relay)
	r.home.MustRun("relays", "add", relay.addr())
	befriend(t, s, r, "rcpt")
	r.stop(syscall.SIGTERM)

	texts := sendMany(t, s, "rcpt", "durable", 20)
	relay.stop(syscall.SIGKILL)
	relay.start()

	r.start()
	checkAll(t, received(t, s, "rcpt", r, len(texts)), texts)
}

// TestRedundancy: R receives through two relays, one of which is down for
// the whole exchange: delivery is complete.
func TestRedundancy(t *testing.T) {
	up := startRelay(t, "relay-up")
	down := startRelay(t, "relay-down")
	s := startPersonal(t, "sender", up)
	r := startPersonal(t, "recipient", up)
	r.home.MustRun("relays", "add", up.addr())
	r.home.MustRun("relays", "add", down.addr())
	down.stop(syscall.SIGKILL)
	befriend(t, s, r, "rcpt")
	r.stop(syscall.SIGTERM)

	texts := sendMany(t, s, "rcpt", "redundant", 10)
	r.start()
	checkAll(t, received(t, s, "rcpt", r, len(texts)), texts)

	// id lists both relays; status and relays ls tell which one works.
	for _, relay := range []*node{up, down} {
		if !slices.Contains(r.id.Relays, relay.addr()) {
			t.Errorf("id --json lists relays %v, without %s", r.id.Relays, relay.addr())
		}
	}
	var ls struct {
		Relays []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Stored uint64 `json:"stored"`
		} `json:"relays"`
	}
	harness.Eventually(t, 20*time.Second, "relays ls shows one relay subscribed and one not", func() bool {
		r.home.JSON(&ls, "relays", "ls")
		states := map[string]string{}
		for _, x := range ls.Relays {
			states[x.ID] = x.State
		}
		return len(ls.Relays) == 2 && states[up.id.PeerID] == "subscribed" && states[down.id.PeerID] != "subscribed"
	})
	var st struct {
		Relays           int `json:"relays"`
		RelaysSubscribed int `json:"relays_subscribed"`
	}
	r.home.JSON(&st, "status")
	if st.Relays < 2 || st.RelaysSubscribed != 1 {
		t.Errorf("status: %d relays, %d subscribed; want 2 and 1", st.Relays, st.RelaysSubscribed)
	}
	r.home.MustRun("relays", "rm", down.id.PeerID)
	r.home.JSON(&ls, "relays", "ls")
	if len(ls.Relays) != 1 || ls.Relays[0].ID != up.id.PeerID {
		t.Errorf("after relays rm: %+v", ls.Relays)
	}
}
