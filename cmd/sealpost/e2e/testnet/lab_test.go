package testnet_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/testnet"
)

type labReport struct {
	Pairs       int `json:"pairs"`
	Reserved    int `json:"reserved"`
	NATed       int `json:"nated"`
	Direct      int `json:"direct"`
	HolePunched int `json:"hole_punched"`
	ViaMailbox  int `json:"via_mailbox"`
	NotArrived  int `json:"not_arrived"`
	Upgraded    int `json:"upgraded"`
	Sent        int `json:"sent"`
	Delivered   int `json:"delivered"`
	Lost        int `json:"lost"`
	Duplicated  int `json:"duplicated"`
	FirstMsg    struct {
		Count int `json:"count"`
	} `json:"first_message_ms"`
	List []struct {
		NAT    string `json:"nat"`
		First  string `json:"first"`
		Direct bool   `json:"direct"`
	} `json:"pair_list"`
	Events []string `json:"events"`
}

// labNamespaces lists the network namespaces whose names start with
// prefix-.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names
}

// TestLab runs a small lab (root, ip, nft and conntrack needed; else it
// skips saying what is missing): a pair behind endpoint-independent NATs,
// one behind symmetric NATs and one with a node on the internet, two
// relays, every fault. Nothing may be lost or shown twice, every node
// behind a NAT must get a relay reservation, every first message must
// arrive, the endpoint-independent pair must get a direct connection (hole
// punching), and the symmetric pair none. Afterwards no namespace of the
// lab is left, and --cleanup removes what a crashed lab leaves.
func TestLab(t *testing.T) {
	if err := testnet.CheckLab(); err != nil {
		t.Skipf("no lab here: %v", err)
	}
	// A prefix of this process: labs of concurrent test runs do not meet.
	prefix := fmt.Sprintf("spt%d", os.Getpid()%100000)
	h := bin.Home(t)
	t.Cleanup(func() { h.Run("testnet", "lab", "--cleanup", "--prefix", prefix) })
	// The lab runs for its duration and then drains for up to two
	// minutes: far longer than an ordinary command on a loaded machine.
	r := h.RunFor(5*time.Minute, "--json", "testnet", "lab", "--prefix", prefix, "--pairs", "3", "--nat", "eim,symmetric,eim/none",
		"--messages", "6", "--duration", "15s", "--drain", "2m", "--faults", "offline,flush-nat,kill-relay",
		"--dir", t.TempDir())
	var rep labReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("testnet lab: %s\nreport: %v", r, err)
	}
	if r.Code != 0 || rep.Lost != 0 || rep.Duplicated != 0 || rep.Sent != 3*8 || rep.Delivered != rep.Sent {
		t.Errorf("testnet lab: exit %d, %d sent, %d delivered, %d lost, %d duplicated; want exit 0 and all 24 delivered once\nevents: %q\nstderr: %s",
			r.Code, rep.Sent, rep.Delivered, rep.Lost, rep.Duplicated, rep.Events, r.Stderr)
	}
	if rep.NATed != 5 || rep.Reserved != rep.NATed {
		t.Errorf("%d of %d nodes behind NATs held a relay reservation; want all of 5", rep.Reserved, rep.NATed)
	}
	if rep.NotArrived != 0 || rep.FirstMsg.Count != 3 || len(rep.List) != 3 {
		t.Fatalf("pairs %+v: want 3 first messages that arrived", rep.List)
	}
	if p := rep.List[0]; p.NAT != "eim/eim" || !p.Direct {
		t.Errorf("pair %+v: want a hole-punched direct connection between the endpoint-independent NATs", p)
	}
	if p := rep.List[1]; p.NAT != "symmetric/symmetric" || p.Direct || p.First != "mailbox" {
		t.Errorf("pair %+v: want no direct connection between the symmetric NATs and the first message through a mailbox", p)
	}
	if left := labNamespaces(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after the lab: %v", left)
	}

	// What a crashed lab leaves: its namespaces (and processes in them).
	for _, ns := range []string{prefix + "-inet", prefix + "-n0"} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
	}
	other := prefix + "x-inet" // another lab's: not to be touched
	if out, err := exec.Command("ip", "netns", "add", other).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", other, err, out)
	}
	defer exec.Command("ip", "netns", "del", other).Run()
	var removed struct {
		Removed []string `json:"removed"`
	}
	h.JSON(&removed, "testnet", "lab", "--cleanup", "--prefix", prefix)
	if len(removed.Removed) != 2 || len(labNamespaces(t, prefix)) != 0 || len(labNamespaces(t, prefix+"x")) != 1 {
		t.Errorf("--cleanup removed %v; want exactly the two namespaces of prefix %s", removed.Removed, prefix)
	}
	if r := h.Run("testnet", "lab", "--prefix", "Bad-Prefix"); r.Code != 1 || !strings.Contains(r.Stderr, "lab prefix") {
		t.Errorf("a bad prefix: %s; want exit 1 naming the prefix", r)
	}
}
