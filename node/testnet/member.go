package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/messaging"
	"github.com/sealpost/sealpost/store"
	"github.com/sealpost/sealpost/store/badgerstore"
)

// member is one node or relay of an in-process network: its store
// directory, identity, and, while it is up, its store and node.
type member struct {
	net   *cluster
	name  string
	index int
	relay bool
	dir   string
	side  int
	skew  time.Duration // how wrong its clock is (ClockSkew)
	gater *gater

	// Set by provision.
	peer peer.ID
	uid  string

	mu     sync.Mutex
	gen    int      // kills so far (each restarts from a copy of the store)
	listen []string // the addresses it last listened on, kept for restarts
	st     store.Store
	n      *node.Node
	up     bool
	// back is when the member last came up (wall clock).
	back time.Time
	// collector of received messages, while up.
	stopCollect context.CancelFunc
	collectDone chan struct{}
	cursor      uint64 // Inbox cursor, kept across restarts
	// dht counts the DHT work of the member's stopped instances (each
	// start has a registry of its own).
	dht dhtCounts
}

// dhtCounts are address record lookups and publications in the DHT (a
// node's sealpost_addr_record_lookup_total and
// sealpost_addr_record_publish_total, summed over their results).
type dhtCounts struct{ lookups, publishes int64 }

func (c *dhtCounts) add(d dhtCounts) {
	c.lookups += d.lookups
	c.publishes += d.publishes
}

// readDHTCounts reads n's counters from its registry.
func readDHTCounts(n *node.Node) dhtCounts {
	var c dhtCounts
	fams, err := n.Registry().Gather()
	if err != nil {
		return c
	}
	for _, f := range fams {
		var sum float64
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		switch f.GetName() {
		case "sealpost_addr_record_lookup_total":
			c.lookups += int64(sum)
		case "sealpost_addr_record_publish_total":
			c.publishes += int64(sum)
		}
	}
	return c
}

// dhtTotals returns the DHT work of all the member's instances so far.
func (m *member) dhtTotals() dhtCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.dht
	if m.n != nil {
		c.add(readDHTCounts(m.n))
	}
	return c
}

// nodeMemTable is the badger memtable size of a personal node's store in
// a testnet. Each open store holds its memtable's arena in memory (8 MiB
// by default, badgerstore's), the largest cost of a node when hundreds run
// in one process; a user's node runs alone and keeps the default. Values
// go to badger's value log (ValueThreshold), so the memtable holds keys
// and pointers, and 2 MiB still bounds a transaction to about 300 KB of
// them.
const nodeMemTable = 2 << 20

// storeOptions are the badger options of member m: no periodic value-log
// GC, sparse files (thousands of stores on one disk would otherwise
// allocate tens of MiB each), and, for a personal node, a smaller memtable
// (nodeMemTable). A relay keeps badgerstore's defaults otherwise.
func (m *member) storeOptions() badgerstore.Options {
	o := badgerstore.Options{GCInterval: -1, Sparse: true}
	if !m.relay {
		o.MemTableSize = nodeMemTable
	}
	return o
}

// provision creates the member's store and identity, and closes it.
func (m *member) provision(ctx context.Context) error {
	st, err := badgerstore.Create(ctx, m.dir, badgerstore.ModeKeyFile, m.storeOptions())
	if err != nil {
		return err
	}
	defer st.Close()
	if err := node.Provision(ctx, st, m.name, nil); err != nil {
		return err
	}
	return st.View(ctx, func(tx *store.Tx) error {
		self, err := tx.Self()
		if err != nil {
			return err
		}
		id, err := identity.ParsePrivate(self.Identity)
		if err != nil {
			return err
		}
		m.uid = id.UserID().String()
		k, err := crypto.UnmarshalPrivateKey(self.DeviceKey)
		if err != nil {
			return err
		}
		m.peer, err = peer.IDFromPrivateKey(k)
		return err
	})
}

// start opens the member's store and starts its node, on the addresses of
// its first start if it had one.
func (m *member) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.up {
		return nil
	}
	st, err := badgerstore.Open(ctx, m.dir, m.storeOptions())
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	cfg, err := m.net.nodeConfig(m)
	if err != nil {
		st.Close()
		return err
	}
	cfg.Store = st
	if len(m.listen) > 0 {
		cfg.Listen = m.listen
	}
	n, err := node.New(ctx, cfg)
	if err != nil && len(m.listen) > 0 {
		// The old port may be taken by now: any port will do, the node
		// tells its contacts its new addresses.
		cfg.Listen = nil
		n, err = node.New(ctx, cfg)
	}
	if err != nil {
		st.Close()
		return fmt.Errorf("%s: %w", m.name, err)
	}
	// The addresses it listens on now: those of its first start, or new
	// ones if they were taken.
	m.listen = listenAddrs(n)
	m.st, m.n = st, n
	m.up, m.back = true, time.Now()
	if !m.relay {
		cctx, cancel := context.WithCancel(context.Background())
		m.stopCollect, m.collectDone = cancel, make(chan struct{})
		go m.collect(cctx, n)
	}
	return nil
}

// listenAddrs returns the node's own addresses without /p2p/, to listen on
// again after a restart.
func listenAddrs(n *node.Node) []string {
	var out []string
	for _, a := range n.Info().Addrs {
		if i := strings.Index(a, "/p2p/"); i > 0 {
			a = a[:i]
		}
		out = append(out, a)
	}
	// QUIC first: the first address is the one given as a bootstrap peer.
	slices.SortStableFunc(out, func(a, b string) int {
		return boolInt(!strings.Contains(a, "/quic-v1")) - boolInt(!strings.Contains(b, "/quic-v1"))
	})
	return out
}

// stop closes the member's node and store.
func (m *member) stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return nil
	}
	m.up = false
	if m.stopCollect != nil {
		m.stopCollect()
		<-m.collectDone
		m.stopCollect = nil
	}
	m.dht.add(readDHTCounts(m.n))
	err := errors.Join(m.n.Close(), m.st.Close())
	m.n, m.st = nil, nil
	return err
}

// kill takes the member down as a crash would, as closely as one process
// allows. Its gater refuses every connection and its open connections are
// cut, so its peers see it vanish at once, streams broken mid-frame and no
// answer after that instant. Then the files of its store are copied as
// they are at that instant: what a SIGKILL leaves on disk (the page cache,
// without the flush of badger's Close), write-ahead log included. The
// member restarts from that copy, so badger recovers from its log as after
// a crash; the abandoned instance is closed after the copy (a process
// cannot let go of an open badger otherwise) and its directory is
// discarded.
func (m *member) kill() error {
	n := m.node()
	if n == nil {
		return nil
	}
	m.gater.dead.Store(true)
	defer m.gater.dead.Store(false)
	disconnect(n, func(peer.ID) bool { return true })
	m.mu.Lock()
	m.gen++
	crashed := fmt.Sprintf("%s.crash%d", m.dir, m.gen)
	err := copyDir(m.dir, crashed)
	old := m.dir
	if err == nil {
		m.dir = crashed
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("copy the store of %s: %w", m.name, err)
	}
	if err := m.stop(); err != nil {
		m.net.log.Warn("close the abandoned instance", "member", m.name, "err", err)
	}
	return os.RemoveAll(old)
}

// disconnect closes n's connections to the peers cut selects and returns
// how many peers it cut.
func disconnect(n *node.Node, cut func(peer.ID) bool) int {
	k := 0
	for _, pi := range n.Peers() {
		if id, err := peer.Decode(pi.PeerID); err == nil && cut(id) {
			n.Disconnect(id)
			k++
		}
	}
	return k
}

// copyDir copies the regular files under src to dst, as they are now.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile (a compaction): as a crash would find it
		}
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// node returns the running node, or nil.
func (m *member) node() *node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// store returns the open store, or nil.
func (m *member) store() store.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// isUp reports whether the member runs.
func (m *member) isUp() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.up
}

// relayAddr returns a relay member's address with /p2p/, as `relays add`
// takes it: its QUIC address if it has one (the mailbox client dials only
// the address it was given). The relay service runs on the relay's node
// (node.Config.RelayService), so this is the node's own address.
func (m *member) relayAddr() string {
	return m.addrs()[0]
}

// addrs returns the member's addresses with /p2p/.
func (m *member) addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, a := range m.listen {
		out = append(out, a+"/p2p/"+m.peer.String())
	}
	return out
}

// collect records the text messages the node's store shows, as they come:
// it reads the inbox after its cursor once when it starts (what arrived
// before it subscribed), then on each message.received event (the
// messaging service publishes it after the message's commit), a burst of
// them read once, and after an overflow of its subscription (what it
// missed). Other events (a group's messages, peers) do not wake it, and
// nothing polls: an idle member costs its collector nothing.
func (m *member) collect(ctx context.Context, n *node.Node) {
	defer close(m.collectDone)
	events := n.Subscribe(ctx)
	m.readInbox(ctx, n.Messaging())
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				events = n.Subscribe(ctx) // overflowed: the inbox read catches up
			} else if e.Type != node.EventMessageReceived {
				continue
			}
		drain:
			for {
				select {
				case _, ok := <-events:
					if !ok {
						break drain
					}
				default:
					break drain
				}
			}
		}
		m.readInbox(ctx, n.Messaging())
	}
}

// inboxPage bounds the messages one inbox read returns.
const inboxPage = 1024

func (m *member) readInbox(ctx context.Context, s *messaging.Service) {
	for range 1 << 20 { // bounded: each round takes a page
		msgs, next, err := s.Inbox(ctx, m.cursor, inboxPage)
		if err != nil {
			if ctx.Err() == nil {
				m.net.log.Warn("inbox", "member", m.name, "err", err)
			}
			return
		}
		m.cursor = next
		for i := range msgs {
			m.net.ledger.shown(m, &msgs[i])
		}
		if len(msgs) < inboxPage {
			return
		}
	}
}

// workDir returns a new directory for a network under parent.
func workDir(parent string) (string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	return os.MkdirTemp(parent, "sealpost-testnet-")
}

func memberDir(work, name string) string { return filepath.Join(work, name) }
