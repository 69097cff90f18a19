package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The lab's network (`sealpost testnet lab`): a private internet made of
// Linux network namespaces, veth pairs, one bridge and nftables NAT
// rules, all created inside namespaces whose names start with the lab's
// prefix, so nothing of it lives in the host's own network namespace and
// deleting the namespaces removes all of it.
//
//	PREFIX-inet     the internet: bridge PREFIX-br, no address, no route
//	                anywhere else
//	PREFIX-rJ       relay J, 198.18.0.(J+1)/16 on the bridge
//	PREFIX-gI       node I's home router: WAN 198.18.1.(I+1)/16 on the
//	                bridge, LAN 198.19.0.1/24, nftables table PREFIX-nat
//	PREFIX-nI       node I: 198.19.0.2/24 behind PREFIX-gI, or, without
//	                NAT, 198.18.1.(I+1)/16 on the bridge itself
//
// Every home LAN is the same 198.19.0.0/24, as home networks are (most
// are 192.168.1.0/24): a node that dials a peer's private address reaches
// its own LAN, never the peer. IPv6 is off in every lab namespace, and no
// namespace has a default route out of the lab: the lab's packets cannot
// reach the host or anything beyond it.

// NAT kinds of a lab node's home router.
const (
	// NATEndpointIndependent: nftables masquerade, which keeps the source
	// port where it can and maps one inside address and port to the same
	// outside port whatever the destination (endpoint-independent
	// mapping; filtering is address- and port-dependent, as conntrack
	// lets in only replies). Hole punching works through it.
	NATEndpointIndependent = "eim"
	// NATSymmetric: masquerade fully-random, a new random outside port per
	// destination (address- and port-dependent mapping). Hole punching
	// cannot predict the port; contacts are reached through relays.
	NATSymmetric = "symmetric"
	// NATNone: the node sits on the internet bridge with a public address.
	NATNone = "none"
)

// NATKinds are the NAT kinds a lab knows.
var NATKinds = []string{NATEndpointIndependent, NATSymmetric, NATNone}

// DefaultLabPrefix prefixes the namespaces, interfaces and nftables tables
// of `sealpost testnet lab`.
const DefaultLabPrefix = "splab"

// maxLabIndex bounds relay and node indices, so that every interface name
// (prefix, dash, a letter, the index, a letter) fits the kernel's 15
// bytes.
const maxLabIndex = 99

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// ErrLabTools: the lab cannot run on this machine (not root, or a tool or
// kernel feature it needs is missing); the error names what.
var ErrLabTools = errors.New("testnet: the lab cannot run here")

// CheckLab reports what is missing on this machine for the lab: root, the
// ip, nft and conntrack commands, and network namespaces. It returns nil
// when the lab can run, else an error wrapping ErrLabTools that names
// what is missing (and the Debian packages that bring it).
func CheckLab() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces need it)")
	}
	for _, t := range []struct{ cmd, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}, {"conntrack", "conntrack"}} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", t.cmd, t.pkg))
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		missing = append(missing, "network namespaces in the kernel")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrLabTools, strings.Join(missing, ", "))
	}
	return nil
}

// labNet is the namespaces of one lab.
type labNet struct {
	prefix string
	netem  bool // the kernel has the netem qdisc
}

func (n *labNet) ns(role string, i int) string { return fmt.Sprintf("%s-%s%d", n.prefix, role, i) }
func (n *labNet) inet() string                 { return n.prefix + "-inet" }
func (n *labNet) bridge() string               { return n.prefix + "-br" }
func relayIP(j int) string                     { return fmt.Sprintf("198.18.0.%d", j+1) }
func wanIP(i int) string                       { return fmt.Sprintf("198.18.1.%d", i+1) }

// Home LAN addresses (the same in every home).
const (
	lanRouter = "198.19.0.1"
	lanNode   = "198.19.0.2"
)

// run runs a command and returns its error with its output.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testnet: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// ipBatch runs ip commands, one a line, in namespace ns ("" for ip's own
// namespace, used only to add and delete namespaces).
func ipBatch(ctx context.Context, ns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return run(ctx, strings.Join(lines, "\n")+"\n", "ip", args...)
}

// inNS runs a command inside namespace ns.
func inNS(ctx context.Context, ns, stdin string, args ...string) error {
	return run(ctx, stdin, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// addNS creates namespace ns with its loopback up and IPv6 off.
func (n *labNet) addNS(ctx context.Context, ns string, forward bool) error {
	if err := ipBatch(ctx, "", "netns add "+ns); err != nil {
		return err
	}
	sysctl := []string{"-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}
	if forward {
		sysctl = append(sysctl, "net.ipv4.ip_forward=1")
	}
	if err := inNS(ctx, ns, "", append([]string{"sysctl"}, sysctl...)...); err != nil {
		return err
	}
	return ipBatch(ctx, ns, "link set lo up")
}

// build creates the internet namespace and its bridge.
func (n *labNet) build(ctx context.Context) error {
	if err := n.addNS(ctx, n.inet(), false); err != nil {
		return err
	}
	if err := ipBatch(ctx, n.inet(),
		"link add "+n.bridge()+" type bridge",
		"link set "+n.bridge()+" up"); err != nil {
		return err
	}
	n.netem = run(ctx, "", "modprobe", "-q", "sch_netem") == nil && n.hasNetem(ctx)
	return nil
}

// hasNetem reports whether the kernel accepts a netem qdisc (tried on the
// bridge of the lab's own internet namespace, then removed).
func (n *labNet) hasNetem(ctx context.Context) bool {
	if ipBatch(ctx, n.inet(), "link add "+n.prefix+"-t0 type dummy") != nil {
		return false
	}
	defer ipBatch(ctx, n.inet(), "link del "+n.prefix+"-t0")
	return run(ctx, "", "tc", "-n", n.inet(), "qdisc", "add", "dev", n.prefix+"-t0", "root", "netem", "delay", "1ms") == nil
}

// plug connects namespace ns to the internet bridge through a veth pair
// named name (inet side) and name+"w" (ns side), with address ip/16, and
// with latency on the ns side when delay > 0 and the kernel has netem.
func (n *labNet) plug(ctx context.Context, ns, name, ip string, delay time.Duration) error {
	wan := name + "w"
	if err := ipBatch(ctx, n.inet(),
		"link add "+name+" type veth peer name "+wan+" netns "+ns,
		"link set "+name+" master "+n.bridge(),
		"link set "+name+" up"); err != nil {
		return err
	}
	if err := ipBatch(ctx, ns, "addr add "+ip+"/16 dev "+wan, "link set "+wan+" up"); err != nil {
		return err
	}
	if delay > 0 && n.netem {
		// Half the round trip each way: on the ns side going out and on
		// the inet side coming in.
		half := fmt.Sprintf("%dus", delay.Microseconds()/2)
		jitter := fmt.Sprintf("%dus", delay.Microseconds()/6)
		if err := run(ctx, "", "tc", "-n", ns, "qdisc", "add", "dev", wan, "root", "netem", "delay", half, jitter); err != nil {
			return err
		}
		if err := run(ctx, "", "tc", "-n", n.inet(), "qdisc", "add", "dev", name, "root", "netem", "delay", half, jitter); err != nil {
			return err
		}
	}
	return nil
}

// addRelay creates relay j's namespace on the internet.
func (n *labNet) addRelay(ctx context.Context, j int, delay time.Duration) (string, error) {
	ns := n.ns("r", j)
	if err := n.addNS(ctx, ns, false); err != nil {
		return "", err
	}
	return ns, n.plug(ctx, ns, ns, relayIP(j), delay)
}

// addNode creates node i's namespace and, unless kind is NATNone, its home
// router's, with the router's NAT rules. It returns the node's namespace.
func (n *labNet) addNode(ctx context.Context, i int, kind string, delay time.Duration) (string, error) {
	node := n.ns("n", i)
	if err := n.addNS(ctx, node, false); err != nil {
		return "", err
	}
	if kind == NATNone {
		return node, n.plug(ctx, node, node, wanIP(i), delay)
	}
	gw := n.ns("g", i)
	if err := n.addNS(ctx, gw, true); err != nil {
		return "", err
	}
	if err := n.plug(ctx, gw, gw, wanIP(i), delay); err != nil {
		return "", err
	}
	lan, home := gw+"l", node+"l"
	if err := ipBatch(ctx, gw,
		"link add "+lan+" type veth peer name "+home+" netns "+node,
		"addr add "+lanRouter+"/24 dev "+lan,
		"link set "+lan+" up"); err != nil {
		return "", err
	}
	if err := ipBatch(ctx, node,
		"addr add "+lanNode+"/24 dev "+home,
		"link set "+home+" up",
		"route add default via "+lanRouter); err != nil {
		return "", err
	}
	random := ""
	if kind == NATSymmetric {
		random = " fully-random"
	}
	// A home router: the LAN goes out masqueraded; from the WAN only
	// replies come in (conntrack). Unsolicited packets are dropped without
	// an answer (no TCP reset, no ICMP), as most home routers do: a reset
	// would end a TCP hole punch whose first SYN arrives before the
	// router's own mapping exists.
	rules := fmt.Sprintf(`table ip %[1]s-nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%[2]s" masquerade%[3]s
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "%[4]s" oifname "%[2]s" accept
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname { "lo", "%[4]s" } accept
	}
}
`, n.prefix, gw+"w", random, lan)
	if err := inNS(ctx, gw, rules, "nft", "-f", "-"); err != nil {
		return "", err
	}
	return node, nil
}

// flushNAT forgets every mapping of node i's home router (its conntrack
// table), as a router's reboot or a mapping timeout does.
func (n *labNet) flushNAT(ctx context.Context, i int) error {
	err := inNS(ctx, n.ns("g", i), "", "conntrack", "-F")
	if err != nil && strings.Contains(err.Error(), "0 flow entries") {
		return nil
	}
	return err
}

// command returns the command that runs argv inside namespace ns.
func (n *labNet) command(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// labNamespaces lists the namespaces of the lab with prefix.
func labNamespaces(ctx context.Context, prefix string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "list")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("testnet: ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// removeLab kills every process in the namespaces of the lab with prefix
// and deletes the namespaces (and with them every interface, the bridge
// and the nftables tables in them). It returns the namespaces removed.
func removeLab(ctx context.Context, prefix string) ([]string, error) {
	names, err := labNamespaces(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var errs []error
	for _, ns := range names {
		if err := ipBatch(ctx, "", "netns del "+ns); err != nil {
			errs = append(errs, err)
		}
	}
	return names, errors.Join(errs...)
}

// labLock holds the lock of a lab prefix: one lab, or one cleanup, per
// prefix at a time. The kernel releases it when the process dies, so a
// crashed lab's prefix is free for the next run, which cleans up first.
type labLock struct{ f *os.File }

// lockLab takes the lock of prefix, or fails at once when another process
// holds it.
func lockLab(prefix string) (*labLock, error) {
	path := filepath.Join(os.TempDir(), "sealpost-lab-"+prefix+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: another lab with prefix %q is running (%s)", ErrRunning, prefix, path)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return &labLock{f: f}, nil
}

func (l *labLock) release() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// CleanupLab removes what a lab with prefix left behind (after a crash or
// SIGKILL): its processes and its namespaces, with everything in them. It
// fails if a lab with that prefix is running. It returns the namespaces
// removed.
func CleanupLab(ctx context.Context, prefix string) ([]string, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("%w: lab prefix %q: want a lowercase letter and up to 7 letters or digits", ErrBadOptions, prefix)
	}
	if err := CheckLab(); err != nil {
		return nil, err
	}
	l, err := lockLab(prefix)
	if err != nil {
		return nil, err
	}
	defer l.release()
	return removeLab(ctx, prefix)
}
