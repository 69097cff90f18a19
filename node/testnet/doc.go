// Package testnet builds whole sealpost networks on one machine, runs
// traffic through them while it breaks things on purpose, and reports
// exactly what arrived: the code of `sealpost testnet` and of the
// project's integration tests (node/testnet/scenario), so that the two
// cannot drift apart. DESIGN.md §9.5 records how a run is drawn, what its
// report counts and what each fault does.
//
// # In one process: Run
//
// Run builds Options.Nodes personal nodes and Options.Relays relays, each
// a real libp2p host on 127.0.0.1 (QUIC and TCP; TCP only with
// Options.TCP) with its own badger store in a temporary directory, and
// wires them as users would: relays added as by `sealpost relays add`,
// contacts made by invite. The scenario (plan.go) is drawn from
// Options.Seed. Phases: start, wire, send (Options.Messages over
// Options.Duration, with the faults of Options.Chaos and the nodes of
// Options.Offline down), heal, drain (at most Options.Drain), check.
//
// Faults: KillRelay (a crash from the store's files as they were),
// RestartNodes, Partition (by connection gaters), Drop (message streams
// reset at random, node.Config.WrapStream) and ClockSkew (node.Config.Clock
// within the 5-minute tolerance).
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
// # In network namespaces: RunLab
//
// RunLab (`sealpost testnet lab`, root only) runs daemon processes of the
// binary in Linux network namespaces: relays on a private internet and
// pairs of personal nodes behind home routers that NAT with nftables
// (labnet.go has the layout and addresses, lab.go the scenario and the
// report, labmember.go the daemon processes, labtraffic.go the invites,
// messages and checks). Every namespace, interface and nftables table starts with
// LabOptions.Prefix and lives inside the lab's namespaces, so removing the
// namespaces (always, when RunLab returns; CleanupLab after a crash)
// removes everything; a lock file per prefix keeps two labs of one prefix
// apart. docs/OPERATING.md explains what the lab shows.
//
// Bounds: every loop is bounded in count and time (the wiring and each
// Send by timeouts, the drain by Options.Drain, process starts by
// ReadyTimeout), and Run raises the soft limit of open files to the hard
// limit first (RaiseFileLimit).
package testnet
