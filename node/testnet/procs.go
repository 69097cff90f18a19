package testnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
)

// Process networks (`sealpost testnet up`): real daemon processes of the
// same binary on loopback ports, each with its own home under a
// directory that records them (StateFile).

// StateFile is the file in a process network's directory that lists its
// members, their homes and their process IDs.
const StateFile = "testnet.json"

// Bounds of process networks.
const (
	// MaxProcs bounds the members of a process network.
	MaxProcs = 256
	// ReadyTimeout bounds the wait for a daemon's API to answer.
	ReadyTimeout = 60 * time.Second
	// StopTimeout is how long Down waits after SIGTERM before SIGKILL.
	StopTimeout = 20 * time.Second
	// initTimeout bounds `sealpost init`.
	initTimeout = 60 * time.Second
	// procParallel daemons start at once.
	procParallel = 8
	// relaysPerProc is how many relays each node of a process network
	// keeps a mailbox on.
	relaysPerProc = 2
)

// Errors of process networks.
var (
	// ErrNoNetwork: the directory holds no process network.
	ErrNoNetwork = errors.New("testnet: no network in the directory (run sealpost testnet up)")
	// ErrRunning: the directory's network still runs.
	ErrRunning = errors.New("testnet: the network in the directory is running (run sealpost testnet down first)")
	// ErrNoMember: no member of that name or index.
	ErrNoMember = errors.New("testnet: no such member")
)

// State is what StateFile records.
type State struct {
	Dir     string    `json:"dir"`
	Binary  string    `json:"binary"`
	Created time.Time `json:"created"`
	Members []Proc    `json:"members"`
}

// Proc is one member of a process network.
type Proc struct {
	Name  string `json:"name"`
	Relay bool   `json:"relay"`
	Home  string `json:"home"`
	// PID is the daemon's process ID (0: not started or stopped by Down).
	PID    int    `json:"pid"`
	PeerID string `json:"peer_id,omitempty"`
	// Addr is a loopback multiaddr of the daemon, with /p2p/.
	Addr string `json:"addr,omitempty"`
	Log  string `json:"log"`
}

// DefaultDir is the directory of a process network when none is given.
func DefaultDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("sealpost-testnet-%d", os.Getuid()))
}

// UpOptions describe a process network.
type UpOptions struct {
	// Nodes and Relays count the members. Nodes must be at least 1.
	Nodes, Relays int
	// Dir holds the homes and StateFile. Default DefaultDir().
	Dir string
	// Binary is the sealpost executable. Default: this process's.
	Binary string
	// Log receives a line per member started. Zero: discarded.
	Log io.Writer
}

// Up starts a process network: the relays first, one by one (each
// bootstraps from those before it), then the nodes, bootstrapped from the
// relays, each keeping a mailbox on up to two of them. The homes are
// created with `sealpost init --profile test --no-passphrase`, so they
// listen on random loopback ports and keep their data keys unprotected.
// A directory that already holds a network is reused (its homes keep
// their identities) unless that network still runs. State is recorded
// after each start, so Down can stop a network whose Up failed halfway.
func Up(ctx context.Context, o UpOptions) (*State, error) {
	if o.Nodes < 1 || o.Relays < 0 || o.Nodes+o.Relays > MaxProcs {
		return nil, fmt.Errorf("%w: %d nodes and %d relays: want at least one node and at most %d members", ErrBadOptions, o.Nodes, o.Relays, MaxProcs)
	}
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("testnet: find the sealpost binary: %w", err)
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if old, err := LoadState(dir); err == nil {
		for _, p := range old.Members {
			if p.alive() {
				return nil, fmt.Errorf("%w: %s (pid %d) in %s", ErrRunning, p.Name, p.PID, dir)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	st := &State{Dir: dir, Binary: o.Binary, Created: time.Now().UTC()}
	for j := range o.Relays {
		st.Members = append(st.Members, newProc(dir, fmt.Sprintf("relay-%d", j), true))
	}
	for i := range o.Nodes {
		st.Members = append(st.Members, newProc(dir, fmt.Sprintf("node-%d", i), false))
	}
	var mu sync.Mutex // guards st and its file
	save := func() error {
		mu.Lock()
		defer mu.Unlock()
		return st.save()
	}
	if err := save(); err != nil {
		return nil, err
	}

	var relayAddrs []string
	for j := range o.Relays {
		p := &st.Members[j]
		if err := p.start(ctx, o.Binary, relayAddrs, true); err != nil {
			save()
			return st, err
		}
		relayAddrs = append(relayAddrs, p.Addr)
		fmt.Fprintf(o.Log, "%s up: pid %d, %s\n", p.Name, p.PID, p.Addr)
		if err := save(); err != nil {
			return st, err
		}
	}
	var nodes []int // indices of the nodes in st.Members
	for i := o.Relays; i < len(st.Members); i++ {
		nodes = append(nodes, i)
	}
	if err := forEach(nodes, procParallel, func(i int) error {
		mu.Lock()
		p := st.Members[i]
		mu.Unlock()
		err := p.start(ctx, o.Binary, relayAddrs, false)
		if err == nil && len(relayAddrs) > 0 {
			// Without a mailbox the node still runs and delivers
			// directly: say so and go on.
			if rerr := p.addRelays(ctx, relayAddrs, i); rerr != nil {
				fmt.Fprintf(o.Log, "%s: %v (it runs without that mailbox)\n", p.Name, rerr)
			}
		}
		mu.Lock()
		st.Members[i] = p
		mu.Unlock()
		if err == nil {
			fmt.Fprintf(o.Log, "%s up: pid %d, %s\n", p.Name, p.PID, p.Addr)
		}
		save()
		return err
	}); err != nil {
		return st, err
	}
	return st, save()
}

func newProc(dir, name string, relay bool) Proc {
	h := filepath.Join(dir, name)
	return Proc{Name: name, Relay: relay, Home: h, Log: filepath.Join(h, "daemon.log")}
}

// environ is this process's environment without SEALPOST_ variables, so
// that a daemon reads only its own home.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEALPOST_") {
			env = append(env, kv)
		}
	}
	return env
}

// start initializes p's home if needed, starts its daemon in a session of
// its own (so that it outlives the terminal of `testnet up`), and waits
// until its API answers.
func (p *Proc) start(ctx context.Context, bin string, bootstrap []string, relay bool) error {
	h := home.Home{Dir: p.Home}
	if !h.Initialized() {
		ictx, cancel := context.WithTimeout(ctx, initTimeout)
		defer cancel()
		cmd := exec.CommandContext(ictx, bin, "--home", p.Home, "init", "--no-passphrase", "--profile", "test", "--name", p.Name)
		cmd.Env = environ()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("testnet: init %s: %v: %s", p.Name, err, lastLine(out.String()))
		}
	}
	args := []string{"--home", p.Home, "daemon", "--no-mdns"}
	if relay {
		args = append(args, "--relay-service")
	}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", p.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testnet: start %s: %w", p.Name, err)
	}
	p.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps the child if it dies while Up runs
	info, err := waitReady(ctx, h, exited)
	if err != nil {
		return fmt.Errorf("testnet: %s: %w (log: %s)", p.Name, err, p.Log)
	}
	p.PeerID = info.PeerID
	for _, a := range info.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			p.Addr = a
			break
		}
	}
	if p.Addr == "" && len(info.Addrs) > 0 {
		p.Addr = info.Addrs[0]
	}
	return nil
}

// waitReady polls the daemon's API until it answers with its identity.
func waitReady(ctx context.Context, h home.Home, exited <-chan error) (node.Info, error) {
	deadline := time.Now().Add(ReadyTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return node.Info{}, fmt.Errorf("the daemon exited: %v", err)
		case <-ctx.Done():
			return node.Info{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		c, err := api.Dial(h)
		if err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := c.ID(rctx)
		cancel()
		c.CloseIdleConnections()
		if err == nil {
			return info, nil
		}
	}
	return node.Info{}, fmt.Errorf("the daemon did not answer within %v", ReadyTimeout)
}

// addRelays makes node number i keep a mailbox on up to relaysPerProc of
// the relays, chosen round-robin.
func (p *Proc) addRelays(ctx context.Context, relays []string, i int) error {
	c, err := api.Dial(home.Home{Dir: p.Home})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	for k := range min(relaysPerProc, len(relays)) {
		r := relays[(i+k)%len(relays)]
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.AddRelay(rctx, r)
		cancel()
		if err != nil {
			return fmt.Errorf("testnet: %s: relays add %s: %w", p.Name, r, err)
		}
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// LoadState reads the StateFile of dir (DefaultDir() if empty).
func LoadState(dir string) (*State, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoNetwork, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("testnet: %s: %w", filepath.Join(dir, StateFile), err)
	}
	if len(st.Members) > MaxProcs {
		return nil, fmt.Errorf("testnet: %s lists %d members, limit %d", filepath.Join(dir, StateFile), len(st.Members), MaxProcs)
	}
	return &st, nil
}

// save writes the state atomically.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, StateFile)); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return nil
}

// Member returns the member named name ("node-3", "relay-0") or, for a
// plain number, the node of that index.
func (s *State) Member(name string) (*Proc, error) {
	if i, err := strconv.Atoi(name); err == nil {
		name = fmt.Sprintf("node-%d", i)
	}
	for k := range s.Members {
		if s.Members[k].Name == name {
			return &s.Members[k], nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoMember, name)
}

// EnvLine is the line that points the CLI at p's home.
func (p *Proc) EnvLine() string { return home.EnvHome + "=" + p.Home }

// alive reports whether p's recorded process runs and is p's daemon: its
// command line names p's home (a recycled PID does not).
func (p *Proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	if err := syscall.Kill(p.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) // no /proc: trust the PID
	}
	args := strings.Split(string(b), "\x00")
	for k, a := range args {
		if a == "--home" && k+1 < len(args) && args[k+1] == p.Home {
			return true
		}
	}
	return false
}

// zombie reports whether pid is a process that has exited and waits to be
// reaped (it still answers signal 0).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// gone reports whether p's process has ended.
func (p *Proc) gone() bool { return !p.alive() || zombie(p.PID) }

// Down stops a process network: SIGTERM to every recorded daemon that is
// still ours, then SIGKILL to those still running after StopTimeout. The
// homes stay for inspection. It returns the state as it left it.
func Down(dir string, log io.Writer) (*State, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	var live []*Proc
	for k := range st.Members {
		p := &st.Members[k]
		if p.alive() {
			if err := syscall.Kill(p.PID, syscall.SIGTERM); err == nil {
				live = append(live, p)
			}
		}
	}
	deadline := time.Now().Add(StopTimeout)
	for time.Now().Before(deadline) {
		left := live[:0]
		for _, p := range live {
			if !p.gone() {
				left = append(left, p)
			} else {
				fmt.Fprintf(log, "%s stopped (pid %d)\n", p.Name, p.PID)
			}
		}
		live = left
		if len(live) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range live {
		syscall.Kill(p.PID, syscall.SIGKILL)
		fmt.Fprintf(log, "%s killed after %v (pid %d)\n", p.Name, StopTimeout, p.PID)
	}
	for k := range st.Members {
		st.Members[k].PID = 0
	}
	return st, st.save()
}

// MemberStatus is one member as Status shows it.
type MemberStatus struct {
	Proc
	Running bool `json:"running"`
	// Status is the daemon's own status, when its API answers.
	Status *node.Status `json:"status,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// Status reports every member of the network in dir: whether its daemon
// runs, and what the daemon says of itself.
func Status(ctx context.Context, dir string) ([]MemberStatus, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	out := make([]MemberStatus, len(st.Members))
	var running []int // indices in out
	for k, p := range st.Members {
		out[k] = MemberStatus{Proc: p, Running: !p.gone()}
		if out[k].Running {
			running = append(running, k)
		}
	}
	forEach(running, procParallel, func(k int) error {
		c, err := api.Dial(home.Home{Dir: out[k].Home})
		if err != nil {
			out[k].Error = err.Error()
			return nil
		}
		defer c.CloseIdleConnections()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := c.Status(rctx)
		if err != nil {
			out[k].Error = err.Error()
			return nil
		}
		out[k].Status = &s
		return nil
	})
	return out, nil
}
