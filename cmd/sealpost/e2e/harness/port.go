package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FreePort returns a loopback TCP port reserved for the test: for a daemon
// that must come back on the same address after a restart.
//
// A port the kernel hands out for port 0 (its ephemeral range) can go to
// any process while the daemon is down, and libp2p listens with
// SO_REUSEPORT: the restarted daemon then binds beside the newcomer instead
// of failing, and the kernel splits the connections to the port between
// them, so a peer dialling the daemon meets another peer ID. The port is
// therefore taken outside the ephemeral range, where port 0 never lands,
// and held for the test by a lock file, so that no other test process
// using FreePort takes it too; it was free when reserved.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &lo, &hi)
	}
	first, last := 10000, lo-1 // below the ephemeral range
	if last-first < 1000 {
		first, last = hi+1, 65535 // or above it
	}
	dir := filepath.Join(os.TempDir(), "sealpost-e2e-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	start := rand.IntN(last - first + 1)
	for i := range 500 {
		port := first + (start+i)%(last-first+1)
		lock, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			lock.Close() // another test holds it
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			lock.Close() // in use by something else
			continue
		}
		ln.Close()
		t.Cleanup(func() { lock.Close() })
		return port
	}
	t.Fatalf("no free loopback TCP port in %d-%d", first, last)
	return 0
}
