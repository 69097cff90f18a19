package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanEnv, when set to a directory, makes TestDaemonDiesWithTest the
// test process that starts a daemon and dies without stopping it.
const orphanEnv = "SEALPOST_HARNESS_ORPHAN"

// TestDaemonDiesWithTest: a test process that dies without its cleanups
// (a timeout, a kill) leaves no daemon running, and the daemon ran in a
// process group of its own.
func TestDaemonDiesWithTest(t *testing.T) {
	if dir := os.Getenv(orphanEnv); dir != "" {
		bin := &Binary{Path: filepath.Join(dir, "sealpost")}
		d := bin.Home(t).Spawn()
		pgid, err := syscall.Getpgid(d.Pid())
		fmt.Printf("pid %d pgid %d %v\n", d.Pid(), pgid, err)
		os.Exit(0) // no cleanup: the daemon is not stopped
	}
	dir := t.TempDir()
	// A daemon that never stops by itself.
	if err := os.WriteFile(filepath.Join(dir, "sealpost"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDaemonDiesWithTest$", "-test.count=1")
	cmd.Env = append(os.Environ(), orphanEnv+"="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the dying test process: %v\n%s", err, out)
	}
	var pid, pgid int
	var perr string
	if _, err := fmt.Sscanf(string(out), "pid %d pgid %d %s", &pid, &pgid, &perr); err != nil || pid <= 1 {
		t.Fatalf("the dying test process printed %q: %v", out, err)
	}
	if pgid != pid {
		t.Errorf("the daemon %d ran in process group %d (%s), want its own", pid, pgid, perr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the daemon %d still runs 10 s after its test process died", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether process pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
