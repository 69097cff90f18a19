// Package testnet builds whole sealpost networks on one machine, runs
// traffic through them while it breaks things on purpose, and reports
// exactly what arrived: the code of `sealpost testnet` and of the
// project's integration tests (node/testnet/scenario), so that the two
// cannot drift apart.
//
// # In one process: Run
//
// Run builds Options.Nodes personal nodes and Options.Relays relays, each
// a real libp2p host on 127.0.0.1 (QUIC and TCP, as a user's node; TCP
// only with Options.TCP) with its own badger store in a temporary
// directory, and wires them as users would: every node receives through
// up to two relays (Service.AddRelay, as `sealpost relays add`), and each
// contact is made by invite (the responder's Invite, the initiator's
// AddContact and a first message, whose delivery receipt confirms the
// session). Personal nodes run the DHT in client mode, as a node behind a
// NAT does, and bootstrap from the relays, which serve the DHT.
//
// The scenario is drawn from Options.Seed (plan.go): the contacts (about
// Options.Contacts per node), the relays of each node, the nodes offline
// during the send phase (Options.Offline), the messages (a random online
// sender to a random contact of it) and the faults. The same seed gives
// the same scenario; what the network does with it depends on timing.
//
// Phases: start, wire, then the send phase, where the offline nodes are
// down and Options.Messages messages are sent spread over
// Options.Duration while the faults happen between them (a fault step
// waits for the Send calls before it); heal, where every fault ends and
// the offline nodes come back; drain, which waits at most Options.Drain
// until every sent message has been shown and every node's outbox is
// empty (nothing left to retry, so no late copy can arrive); and check,
// which reads every node's whole history.
//
// What the report counts. A message is sent when Send returned its ID;
// delivered when the recipient's store shows it (Service.Inbox, the
// history `sealpost inbox` and `messages` show); lost when it was sent and
// is not shown after the drain; duplicated when the recipient's history
// shows it more than once. Each node's collector reads its inbox after
// every message.received event, so the latency of a message runs from the
// Send call to the recipient's commit (its ReceivedAt, less its clock
// skew); for a recipient that was offline when the message was sent it
// runs from the recipient's return ("via_relay": such messages can only
// have arrived through its relays, or through a retry once it was back
// when there are no relays). CPU time and peak memory are the process's
// (getrusage); the relays' stored bytes are the most their stores held at
// once (envelopes and card and prekey blobs), sampled every
// ProgressEvery.
//
// # Faults
//
//   - KillRelay: a relay's gater refuses every connection and its open
//     connections are cut at once (its peers see it vanish, streams
//     broken mid-frame, no answer after that instant); the files of its
//     store are copied as they are at that instant, which is what a
//     SIGKILL leaves (the page cache, write-ahead log included, without
//     badger's Close), and the relay restarts from that copy later, on
//     the same address, so badger recovers from its log as after a crash.
//     The abandoned instance is then closed (a process cannot let go of an
//     open badger otherwise) and its directory discarded. A real SIGKILL of
//     a relay process is what `testnet up` networks and the relay's own
//     crash test give.
//   - RestartNodes: a tenth of the online nodes, each right after it sent
//     to an offline contact, close and start again from their stores.
//   - Partition: the nodes and relays are split in two halves; every
//     device and relay host's connection gater refuses connections across
//     the cut and the open ones are closed (Node.Disconnect). The mailbox
//     client's own hosts (node/mailbox) take no gater, so the relays stay
//     reachable through them from both halves: a partition of the direct
//     paths, as between two networks that both reach the relays.
//   - Drop: every read or write on a message stream resets the stream with
//     probability dropRate (node.Config.WrapStream), losing frames and
//     acknowledgements in flight.
//   - ClockSkew: a fifth of the nodes run clocks 2 to 4.5 minutes off
//     (node.Config.Clock), within the 5-minute clock tolerance of records
//     with times; beyond it, others refuse a fast node's fresh prekeys as
//     created in the future.
//
// Relays: a relay member is a node as `sealpost daemon --relay-service`
// runs one: node.Config.RelayService on, so node.New runs the relay
// service (node/relay, default resources) and circuit relay v2 on the
// node's own host, over its store; the DHT in server mode; the bootstrap
// peer of every node. Its connection and resource limits are the relay
// profile's (node.Defaults(node.Relay)), raised with the network's size as
// an operator would. Killing, cutting and partitioning a relay act on
// that one host, through its gater.
//
// # As processes: Up, Status, Down
//
// Up starts real daemon processes of the sealpost binary on loopback
// ports, each with its own home under a directory that records their
// process IDs (StateFile); Member and Proc.EnvLine give the
// SEALPOST_HOME=... line to drive one with the normal CLI; Status asks each
// daemon for its status; Down stops them by their recorded process IDs
// (SIGTERM, then SIGKILL after StopTimeout) and keeps the homes. A PID is
// signalled only while /proc shows it running the daemon of that home.
//
// Bounds: every loop is bounded in count and time (the wiring and each
// Send by timeouts, the drain by Options.Drain, process starts by
// ReadyTimeout), and Run raises the soft limit of open files to the hard
// limit first (RaiseFileLimit).
package testnet
