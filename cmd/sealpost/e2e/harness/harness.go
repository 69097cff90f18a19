// Package harness runs the sealpost binary as real processes for the
// end-to-end tests under cmd/sealpost/e2e. Each test package builds the binary
// once in TestMain:
//
//	var bin *harness.Binary
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }
//
// and then gives every node its own home (Binary.Home) and daemon process
// (Home.Start), all on 127.0.0.1. Every process a test starts is stopped when
// the test ends.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/nodetest"
)

// Timeouts of the harness. They bound how long a broken binary can stall a
// test; they are not assertions about speed.
const (
	runTimeout   = 60 * time.Second // one CLI command
	readyTimeout = 60 * time.Second // a daemon until its API answers
	stopTimeout  = 20 * time.Second // a daemon after a signal
)

// Binary is the sealpost binary built for one test package.
type Binary struct {
	// Path is the executable.
	Path string
}

// Main builds the binary into a temporary directory, points *bin at it, runs
// the tests, runs after (what the package's tests share, stopped), fails if
// goroutines are left running, and removes the directory. It returns the
// exit code for os.Exit.
func Main(m *testing.M, bin **Binary, after ...func()) int {
	dir, err := os.MkdirTemp("", "sealpost-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sealpost")
	build := exec.Command("go", "build", "-o", path, "github.com/sealpost/sealpost/cmd/sealpost")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness: go build:", err)
		return 2
	}
	*bin = &Binary{Path: path}
	code := m.Run()
	for _, f := range after {
		f()
	}
	if code == 0 {
		if err := nodetest.FindLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "harness: goroutines left running after the tests:", err)
			return 1
		}
	}
	return code
}

// Home is one node's home directory.
type Home struct {
	t   testing.TB
	bin *Binary
	// Dir is the home directory (it does not exist until init).
	Dir string
	// State is the home's state directory (XDG_STATE_HOME of its
	// commands), outside the home.
	State string
	// Env is added to the environment of every command run on this home.
	Env []string
}

// Home returns a new, not yet initialized home in a temporary directory,
// with a state directory of its own (XDG_STATE_HOME: the store's rollback
// marker lives there, outside the home).
func (b *Binary) Home(t testing.TB) *Home {
	t.Helper()
	tmp := t.TempDir()
	return &Home{t: t, bin: b, Dir: filepath.Join(tmp, "home"), State: filepath.Join(tmp, "state")}
}

// Result is what a finished command left.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
}

// environ is the environment of the child processes: this process's, less
// anything that would point them at another home or passphrase.
func (h *Home) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEALPOST_") {
			env = append(env, kv)
		}
	}
	env = append(env, "XDG_STATE_HOME="+h.State)
	return append(env, h.Env...)
}

func (h *Home) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.bin.Path, append([]string{"--home", h.Dir}, args...)...)
	cmd.Env = h.environ()
	cmd.Stdin = nil // /dev/null: never a terminal
	cmd.SysProcAttr = ProcAttr()
	return cmd
}

// ProcAttr starts a process in a process group of its own, so a signal
// to the test's group (a terminal's ^C) does not reach it first, and
// killed when the test process dies (a test binary that times out or is
// killed leaves nothing running). The parent-death signal comes when the
// thread that started the process ends; the Go runtime ends a thread
// only under a goroutine that locked it and did not unlock it, which
// nothing here does.
func ProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Run runs one command on this home and waits for it.
func (h *Home) Run(args ...string) Result {
	h.t.Helper()
	return h.RunStdin("", args...)
}

// RunStdin runs one command with stdin as its standard input.
func (h *Home) RunStdin(stdin string, args ...string) Result {
	h.t.Helper()
	return h.run(runTimeout, stdin, args...)
}

// RunFor runs one command that may take longer than an ordinary one (a
// lab or a network run with its own duration) and kills it after timeout.
func (h *Home) RunFor(timeout time.Duration, args ...string) Result {
	h.t.Helper()
	return h.run(timeout, "", args...)
}

func (h *Home) run(timeout time.Duration, stdin string, args ...string) Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := h.command(ctx, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.Exited():
		r.Code = exit.ExitCode()
	default:
		h.t.Fatalf("sealpost %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// MustRun runs a command and fails the test unless it exits 0.
func (h *Home) MustRun(args ...string) Result {
	h.t.Helper()
	r := h.Run(args...)
	if r.Code != 0 {
		h.t.Fatalf("sealpost %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// JSON runs a command with --json and decodes its one object into v.
func (h *Home) JSON(v any, args ...string) {
	h.t.Helper()
	r := h.MustRun(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		h.t.Fatalf("sealpost --json %s: %v\n%s", strings.Join(args, " "), err, r)
	}
}

// DecodeLines decodes the output of a --json command that prints one object
// a line (inbox, messages), failing the test on a line that is not one.
func DecodeLines[T any](t testing.TB, stdout string) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	return out
}

// Init initializes the home for tests: test profile, no passphrase.
func (h *Home) Init(args ...string) {
	h.t.Helper()
	h.MustRun(append([]string{"init", "--profile", "test", "--no-passphrase"}, args...)...)
}

// Daemon is a running `sealpost daemon` process.
type Daemon struct {
	home *Home
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	code int
}

// Start starts `sealpost daemon ARGS...` on this home and waits until its API
// answers. The daemon is stopped (SIGTERM, then SIGKILL) when the test ends.
func (h *Home) Start(args ...string) *Daemon {
	h.t.Helper()
	d := h.Spawn(args...)
	deadline := time.Now().Add(readyTimeout)
	for {
		if d.Exited() {
			h.t.Fatalf("daemon exited with %d before it was ready:\n%s", d.code, d.Output())
		}
		if h.Run("status").Code == 0 {
			return d
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("daemon not ready after %v:\n%s", readyTimeout, d.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Spawn starts `sealpost daemon ARGS...` without waiting for it to be ready.
func (h *Home) Spawn(args ...string) *Daemon {
	h.t.Helper()
	cmd := h.command(context.Background(), append([]string{"daemon"}, args...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		h.t.Fatalf("start daemon: %v", err)
	}
	d := &Daemon{home: h, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		d.code = 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			d.code = exit.ExitCode() // -1 when killed by a signal
		} else if err != nil {
			d.code = -1
		}
		close(d.done)
	}()
	h.t.Cleanup(func() {
		if !d.Exited() {
			d.Stop(syscall.SIGTERM)
		}
		if h.t.Failed() {
			h.t.Logf("daemon %s output:\n%s", h.Dir, d.Output())
		}
	})
	return d
}

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end by itself and returns its exit code.
func (d *Daemon) Wait() int {
	d.home.t.Helper()
	select {
	case <-d.done:
		return d.code
	case <-time.After(stopTimeout):
		d.cmd.Process.Kill()
		<-d.done
		d.home.t.Fatalf("daemon still running after %v:\n%s", stopTimeout, d.Output())
		return -1
	}
}

// Stop sends sig and waits for the process to end; it returns the exit
// code (-1 if a signal killed it). A process still running after the stop
// timeout is killed and the test fails.
func (d *Daemon) Stop(sig os.Signal) int {
	d.home.t.Helper()
	if d.Exited() {
		return d.code
	}
	d.cmd.Process.Signal(sig)
	return d.Wait()
}

// Output is what the daemon wrote to stdout and stderr so far.
func (d *Daemon) Output() string { return d.out.String() }

// syncBuffer is a bytes.Buffer safe for the writer goroutines of exec.Cmd
// and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Eventually retries f every 100 ms for up to d, and fails the test with
// what when it never holds.
func Eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
