package testnet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/node/api"
	"github.com/sealpost/sealpost/node/home"
	"github.com/sealpost/sealpost/node/messaging"
)

// labMember is one daemon of the lab.
type labMember struct {
	name  string
	ns    string
	kind  string // NAT kind; "" for relays
	relay bool
	home  string
	args  []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	peerID string
	addr   string   // relays: the public TCP multiaddr with /p2p/
	addrs  []string // relays: the public QUIC and TCP multiaddrs with /p2p/
	c      *api.Client
	via    map[string]string // message text -> how it arrived (events)
}

// startMember initializes m's home if needed and starts its daemon in its
// namespace.
func (l *lab) startMember(ctx context.Context, m *labMember, boot []string) error {
	if m.home == "" {
		m.home = filepath.Join(l.dir, m.name)
		profile := "personal"
		if m.relay {
			profile = "relay"
		}
		ictx, cancel := context.WithTimeout(ctx, initTimeout)
		defer cancel()
		cmd := exec.CommandContext(ictx, l.o.Binary, "--home", m.home, "init", "--no-passphrase", "--profile", profile, "--name", m.name)
		cmd.Env = environ()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("testnet: init %s: %v: %s", m.name, err, lastLine(out.String()))
		}
		m.args = []string{l.o.Binary, "--home", m.home, "daemon", "--no-mdns", "--lab-addressing",
			"--listen", fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", labPort), "--listen", fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", labPort)}
		for _, b := range boot {
			m.args = append(m.args, "--bootstrap", b)
		}
		if l.o.LogLevel != "" {
			m.args = append(m.args, "--log-level", l.o.LogLevel)
		}
	}
	if err := m.startDaemon(ctx, l.net); err != nil {
		return err
	}
	if m.relay {
		m.addr, m.addrs = "", nil
		info, err := m.client().ID(ctx)
		if err != nil {
			return fmt.Errorf("testnet: %s: %w", m.name, err)
		}
		for _, a := range info.Addrs {
			if !strings.HasPrefix(a, "/ip4/198.18.0.") || strings.Contains(a, "/p2p-circuit") {
				continue
			}
			m.addrs = append(m.addrs, a)
			if strings.Contains(a, "/tcp/") {
				m.addr = a
			}
		}
		if m.addr == "" {
			return fmt.Errorf("testnet: %s shows no public TCP address: %v", m.name, info.Addrs)
		}
	}
	return nil
}

// startDaemon starts m's daemon in its namespace and waits for its API.
func (m *labMember) startDaemon(ctx context.Context, n *labNet) error {
	logf, err := os.OpenFile(filepath.Join(m.home, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", m.name, err)
	}
	defer logf.Close()
	cmd := n.command(m.ns, m.args...)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches the lab,
	// which stops the daemons in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testnet: start %s: %w", m.name, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		exited <- err
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.exited = cmd, done
	m.mu.Unlock()
	info, err := waitReady(ctx, home.Home{Dir: m.home}, exited)
	if err != nil {
		m.signal(syscall.SIGKILL)
		return fmt.Errorf("testnet: %s: %w (log: %s)", m.name, err, filepath.Join(m.home, "daemon.log"))
	}
	m.mu.Lock()
	m.peerID = info.PeerID
	m.mu.Unlock()
	return nil
}

func (m *labMember) client() *api.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		if c, err := api.Dial(home.Home{Dir: m.home}); err == nil {
			m.c = c
		} else {
			return api.NewUnixClient(filepath.Join(m.home, "api.sock"))
		}
	}
	return m.c
}

func (m *labMember) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exited == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *labMember) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(sig)
	}
}

// stop ends m's daemon: SIGTERM, then SIGKILL after StopTimeout.
func (m *labMember) stop() {
	m.mu.Lock()
	done := m.exited
	m.mu.Unlock()
	if done == nil {
		return
	}
	m.signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(StopTimeout):
		m.signal(syscall.SIGKILL)
		<-done
	}
}

// kill ends m's daemon with SIGKILL, as a crash or power loss does.
func (m *labMember) kill() {
	m.mu.Lock()
	done := m.exited
	m.mu.Unlock()
	if done == nil {
		return
	}
	m.signal(syscall.SIGKILL)
	<-done
}

func (l *lab) stopAll() {
	all := append(slices.Clone(l.nodes), l.relays...)
	forEach(all, len(all)+1, func(m *labMember) error { m.stop(); return nil })
}

// watch records, from m's event stream, how each message reached m (the
// via of message.received); it subscribes again after m restarts.
func (l *lab) watch(ctx context.Context, m *labMember) {
	for ctx.Err() == nil {
		err := m.client().Events(ctx, func(ev api.Event) error {
			if ev.Type != messaging.EventMessageReceived {
				return nil
			}
			var msg messaging.Message
			if json.Unmarshal(ev.Data, &msg) == nil {
				m.mu.Lock()
				if _, ok := m.via[msg.Text]; !ok {
					m.via[msg.Text] = msg.Via
				}
				m.mu.Unlock()
			}
			return nil
		})
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(labPoll):
		}
	}
}

// waitReservations waits, at most labReserveWait, until every node behind
// a NAT shows a circuit address, and returns how many do.
func (l *lab) waitReservations(ctx context.Context) int {
	deadline := time.Now().Add(labReserveWait)
	for {
		n := 0
		for _, m := range l.nodes {
			if m.kind == NATNone {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := m.client().ID(rctx)
			cancel()
			if err == nil && slices.ContainsFunc(info.Addrs, func(a string) bool { return strings.Contains(a, "/p2p-circuit") }) {
				n++
			}
		}
		nated := 0
		for _, m := range l.nodes {
			if m.kind != NATNone {
				nated++
			}
		}
		if n == nated || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(time.Second)
	}
}
