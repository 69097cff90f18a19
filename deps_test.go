package sealpost_test

// The dependency rules of DESIGN.md §1 and docs/ARCHITECTURE.md, checked on
// what `go list -deps` reports for the whole module (the packages' own
// files; tests may import more). Each rule binds some packages and names
// what they may not import; TestDependencyRulesCatch breaks every rule
// once, so that none can pass by reading nothing.
//
// Patterns are go list's: "..." is a wildcard, "node/..." is node and
// every package below it, "node" is that package alone. A pattern whose
// first element has a dot ("github.com/libp2p/...") names packages of
// other modules; any other is relative to this module, and "./..." is all
// of it. "..." alone is every package outside the standard library, which
// no rule restricts.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sealpost/sealpost"

// benchTree holds the runners of `sealpost bench`: the one place that may
// build whole nodes, relays and badger stores for measuring.
const benchTree = "cmd/sealpost/internal/bench/..."

// rule forbids the packages matching in (and none of except) to import
// what deny matches and allow does not: directly, or anywhere in their
// dependencies if deps is set.
type rule struct {
	in, except  []string
	deny, allow []string
	deps        bool
	why         string
}

var (
	libp2p  = []string{"github.com/libp2p/...", "github.com/multiformats/..."}
	badger  = []string{"github.com/dgraph-io/..."}
	helpers = []string{"...test", "cmd/sealpost/e2e/..."} // storetest, clocktest, nodetest, the e2e harness
)

var rules = []rule{
	// The layers: cmd -> node -> store -> protocol -> crypto (store keeps
	// records typed with protocol's and crypto's identifiers).
	{in: []string{"crypto/..."}, deny: []string{"..."},
		allow: []string{"crypto/...", "golang.org/x/crypto/...", "golang.org/x/sys/...", "filippo.io/edwards25519/..."}, deps: true,
		why: "crypto/ is the bottom layer: the standard library, golang.org/x/crypto and filippo.io/edwards25519 only"},
	{in: []string{"protocol/..."}, deny: []string{"store/...", "node/...", "cmd/..."},
		why: "imports point cmd -> node -> store -> protocol -> crypto"},
	{in: []string{"store/..."}, deny: []string{"node/...", "cmd/..."},
		why: "imports point cmd -> node -> store -> protocol -> crypto"},
	{in: []string{"node/..."}, deny: []string{"cmd/..."},
		why: "imports point cmd -> node -> store -> protocol -> crypto"},

	// Other modules.
	{in: []string{"./..."}, except: []string{"node/...", benchTree}, deny: libp2p,
		why: "only node/... (and the bench tree) imports libp2p"},
	{in: []string{"protocol/...", "store/..."}, deny: libp2p, deps: true,
		why: "the wire formats and the store work without a network stack"},
	{in: []string{"./..."}, except: []string{"store/badgerstore"}, deny: badger,
		why: "only store/badgerstore imports badger"},
	{in: []string{"protocol/...", "store/..."}, except: []string{"store/badgerstore"}, deny: badger, deps: true,
		why: "the wire formats and the typed store work without a storage engine"},
	{in: []string{"./..."}, except: []string{"protocol/..."}, deny: []string{"google.golang.org/protobuf/..."},
		why: "protobuf stays inside protocol/; other packages see Go types"},

	// How node/ is cut.
	{in: []string{"node/..."}, except: []string{"node/home", "node/testnet/..."}, deny: []string{"store/badgerstore"},
		why: "services take a store.Store; only node/home and node/testnet open badger stores"},
	{in: []string{"node/relay/..."}, deny: []string{"node", "node/mailbox/...", "node/messaging/...", "node/api/..."},
		why: "the relay server knows its clients only through the wire"},
	{in: []string{"node/mailbox/..."}, deny: []string{"node", "node/relay/...", "node/messaging/...", "node/api/..."},
		why: "the mailbox client knows relays only through the wire; messaging uses it, not the other way"},
	{in: []string{"node/messaging/..."}, deny: []string{"node", "node/relay/...", "node/api/...", "node/home/..."},
		why: "messaging is a service node composes; it knows relays through node/mailbox"},
	{in: []string{"node/files/..."}, deny: []string{"node", "node/messaging/...", "node/mailbox/...", "node/relay/...", "node/blobrelay/...", "node/api/..."},
		why: "the attachment service knows messaging and the relay client through the interfaces it declares"},
	{in: []string{"node/blobrelay/..."}, deny: []string{"node", "node/messaging/...", "node/mailbox/...", "node/files/...", "node/relay/...", "node/api/..."},
		why: "the relay's blob service knows its clients only through the wire"},
	{in: []string{"node/internal/..."}, deny: []string{"node/..."}, allow: []string{"node/internal/..."},
		why: "node/internal/ holds leaves the services share"},
	{in: []string{"node/grouprelay/..."}, deny: []string{"node", "node/mailbox/...", "node/messaging/...", "node/api/...", "node/grouplog/..."},
		why: "the group log service knows its clients only through the wire"},
	{in: []string{"node/grouplog/..."}, deny: []string{"node/..."}, allow: []string{"node/internal/...", "node/grouplog/..."},
		why: "the group log client speaks the wire only; the engine that uses it decides what to send"},
	{in: []string{"node/gossip/..."}, deny: []string{"node/..."}, allow: []string{"node/internal/...", "node/gossip/..."},
		why: "gossip is a transport the group engine uses; it knows no service"},
	{in: []string{"node/groups/..."}, deny: []string{"node", "node/relay/...", "node/grouprelay/...", "node/api/...", "node/home/...", "node/files/..."},
		why: "the group engine is a service node composes; it knows relays through node/mailbox and node/grouplog"},

	// The binary and its benchmarks.
	{in: []string{"cmd/sealpost"}, deny: []string{"./..."}, allow: []string{"node/...", benchTree},
		why: "the binary talks to node/... (and its API client) only; its bench tree is the one exception"},
	{in: []string{"./..."}, except: []string{"cmd/sealpost", benchTree}, deny: []string{benchTree, "...bench..."},
		why: "no production package imports a bench package"},
	{in: []string{"cmd/sealpost/internal/bench/cryptobench"}, deny: []string{"./..."}, allow: []string{"crypto/...", "cmd/sealpost/internal/bench"},
		why: "the crypto figures measure crypto/ alone"},

	// Test helpers.
	{in: []string{"./..."}, except: helpers, deny: helpers,
		why: "test helpers (storetest, clocktest, nodetest, the e2e harness) are imported by tests only"},
}

// layers are the module's top-level directories (DESIGN.md §1).
var layers = []string{"crypto", "protocol", "store", "node", "cmd"}

// listedPackage is the part of `go list -json` the rules read.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func TestDependencyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	cmd := exec.Command(goTool, "list", "-deps", "-json=ImportPath,Standard,Imports,Deps,Error", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs, err := decodePackages(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list reported no packages")
	}
	for _, v := range violations(pkgs) {
		t.Error(v.msg)
	}
}

// TestDependencyRulesCatch feeds violations() packages that break the
// rules — every rule at least once — and packages that follow them.
func TestDependencyRulesCatch(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	const (
		peer     = "github.com/libp2p/go-libp2p/core/peer"
		badgerDB = "github.com/dgraph-io/badger/v4"
		proto    = "google.golang.org/protobuf/proto"
	)
	bad := []struct{ pkg, imp string }{
		{"crypto/ratchet", m("protocol")},
		{"crypto/ratchet", m("store")},
		{"crypto/seal", "github.com/example/x"},
		{"protocol", m("store")},
		{"store", m("node/messaging")},
		{"store", peer},
		{"store/badgerstore", m("node/relay")},
		{"node/api", m("cmd/sealpost")},
		{"node", badgerDB},
		{"node", proto},
		{"cmd/sealpost", "github.com/multiformats/go-multiaddr"},
		{"cmd/sealpost", m("store")},
		{"cmd/sealpost", m("store/badgerstore")},
		{"cmd/sealpost", m("crypto/identity")},
		{"cmd/sealpost", m("protocol")},
		{"node/relay", m("store/badgerstore")},
		{"node/relay", m("cmd/sealpost/internal/bench/relaybench")},
		{"node/relay", m("node/mailbox")},
		{"node/mailbox", m("node/messaging")},
		{"node/messaging", m("node")},
		{"node/internal/clock", m("node/relay")},
		{"node/gossip", m("node/messaging")},
		{"node/files", m("node/messaging")},
		{"node/blobrelay", m("node/files")},
		{"node/grouprelay", m("node/grouplog")},
		{"node/grouplog", m("node/mailbox")},
		{"node/groups", m("node/grouprelay")},
		{"store/badgerstore", m("crypto/bench")},
		{"node/messaging", m("store/storetest")},
		{"node/relay", m("node/internal/clock/clocktest")},
		{"node/messaging", m("node/nodetest")},
		{"node/testnet", m("cmd/sealpost/e2e/harness")},
		{"cmd/sealpost/internal/bench/cryptobench", m("store")},
	}
	// Dependencies that only arrive through another package.
	deps := []struct{ pkg, dep string }{
		{"crypto/seal", "github.com/example/y"},
		{"protocol", peer},
		{"store", badgerDB},
	}
	good := []struct{ pkg, imp string }{
		{"crypto/seal", m("crypto/internal/ecc")},
		{"crypto/seal", "golang.org/x/crypto/chacha20poly1305"},
		{"store/badgerstore", badgerDB},
		{"store/badgerstore", m("store")},
		{"protocol", proto},
		{"node/home", m("store/badgerstore")},
		{"node/testnet", m("store/badgerstore")},
		{"node/testnet/scenario", m("node/testnet")},
		{"node/messaging", m("node/mailbox")},
		{"node/internal/ratelimit", m("node/internal/clock")},
		{"node/gossip", m("node/internal/clock")},
		{"node/grouprelay", m("node/internal/jobs")},
		{"node/api", m("node")},
		{"cmd/sealpost", m("node/api")},
		{"cmd/sealpost", m("cmd/sealpost/internal/bench/cryptobench")},
		{"cmd/sealpost", "github.com/spf13/cobra"},
		{"cmd/sealpost/internal/bench/relaybench", "github.com/libp2p/go-libp2p"},
		{"cmd/sealpost/internal/bench/relaybench", m("store/badgerstore")},
		{"cmd/sealpost/internal/bench/cryptobench", m("crypto/pqxdh")},
		{"cmd/sealpost/internal/bench/cryptobench", m("cmd/sealpost/internal/bench")},
		{"store/storetest", m("store")},
		{"node/nodetest", m("node/relay")},
		{"node/nodetest", "github.com/libp2p/go-libp2p/p2p/net/mock"},
		{"store", m("protocol")},
		{"store", m("crypto/identity")},
	}
	pkgs := []listedPackage{{ImportPath: "fmt", Standard: true}}
	add := func(pkg, imp string, direct bool) {
		i := slices.IndexFunc(pkgs, func(p listedPackage) bool { return p.ImportPath == m(pkg) })
		if i < 0 {
			pkgs = append(pkgs, listedPackage{ImportPath: m(pkg), Imports: []string{"fmt"}, Deps: []string{"fmt"}})
			i = len(pkgs) - 1
		}
		if direct {
			pkgs[i].Imports = append(pkgs[i].Imports, imp)
		}
		pkgs[i].Deps = append(pkgs[i].Deps, imp)
	}
	for _, b := range bad {
		add(b.pkg, b.imp, true)
	}
	for _, d := range deps {
		add(d.pkg, d.dep, false)
	}
	for _, g := range good {
		add(g.pkg, g.imp, true)
	}
	pkgs = append(pkgs,
		listedPackage{ImportPath: m("tools/x")},
		listedPackage{ImportPath: m("node/messaging/deliverybench")},
	)

	vs := violations(pkgs)
	var got []string
	fired := map[int]bool{}
	for _, v := range vs {
		got = append(got, v.msg)
		fired[v.rule] = true
	}
	all := strings.Join(got, "\n")
	for _, b := range bad {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, b.pkg+" imports "+b.imp+":") }) {
			t.Errorf("%s importing %s is not reported; got:\n%s", b.pkg, b.imp, all)
		}
	}
	for _, d := range deps {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, d.pkg+" depends on "+d.dep+":") }) {
			t.Errorf("%s depending on %s is not reported; got:\n%s", d.pkg, d.dep, all)
		}
	}
	for _, g := range good {
		if slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, g.pkg+" imports "+g.imp+":") }) {
			t.Errorf("%s importing %s is reported, but is allowed:\n%s", g.pkg, g.imp, all)
		}
	}
	for _, want := range []string{"tools/x is in no layer", "node/messaging/deliverybench is a bench package outside"} {
		if !strings.Contains(all, want) {
			t.Errorf("violations do not report %q; got:\n%s", want, all)
		}
	}
	for i, r := range rules {
		if !fired[i] {
			t.Errorf("rule %d (%s) is broken by no case of this test", i, r.why)
		}
	}
}

func decodePackages(out []byte) ([]listedPackage, error) {
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// violation is one broken rule: its message, and the index of the rule in
// rules (-1 for the checks of where packages live).
type violation struct {
	msg  string
	rule int
}

// violations returns one violation per package and import that break a
// rule, sorted by message.
func violations(pkgs []listedPackage) []violation {
	std := map[string]bool{}
	for _, p := range pkgs {
		if p.Standard {
			std[p.ImportPath] = true
		}
	}
	var v []violation
	for _, p := range pkgs {
		rel, ok := moduleRel(p.ImportPath)
		if !ok {
			continue
		}
		if p.Error != nil {
			v = append(v, violation{fmt.Sprintf("%s: %s", rel, p.Error.Err), -1})
		}
		if rel == "" {
			continue // the root holds only the module-wide tests
		}
		if area, _, _ := strings.Cut(rel, "/"); !slices.Contains(layers, area) {
			v = append(v, violation{fmt.Sprintf("%s is in no layer of DESIGN.md §1 (%s)", rel, strings.Join(layers, ", ")), -1})
		}
		if matchAny([]string{"...bench..."}, p.ImportPath) && !matchAny([]string{benchTree}, p.ImportPath) {
			v = append(v, violation{fmt.Sprintf("%s is a bench package outside %s", rel, benchTree), -1})
		}
		for i, r := range rules {
			if !matchAny(r.in, p.ImportPath) || matchAny(r.except, p.ImportPath) {
				continue
			}
			list := p.Imports
			if r.deps {
				list = p.Deps
			}
			for _, imp := range list {
				if std[imp] || !matchAny(r.deny, imp) || matchAny(r.allow, imp) {
					continue
				}
				verb := "imports"
				if !slices.Contains(p.Imports, imp) {
					verb = "depends on"
				}
				v = append(v, violation{fmt.Sprintf("%s %s %s: %s", rel, verb, imp, r.why), i})
			}
		}
	}
	slices.SortFunc(v, func(a, b violation) int { return strings.Compare(a.msg, b.msg) })
	return slices.CompactFunc(v, func(a, b violation) bool { return a.msg == b.msg })
}

// moduleRel returns path relative to the module ("" for the root).
func moduleRel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

// matchAny reports whether the import path matches one of the patterns.
func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return pattern(pat).MatchString(path) })
}

var compiled = map[string]*regexp.Regexp{}

// pattern compiles a pattern (see the top of this file) as cmd/go does:
// "..." matches any string, and a trailing "/..." also matches the empty
// string.
func pattern(pat string) *regexp.Regexp {
	if re, ok := compiled[pat]; ok {
		return re
	}
	full := pat
	switch first, _, _ := strings.Cut(pat, "/"); {
	case pat == "...":
	case pat == "./...":
		full = module + "/..."
	case !strings.Contains(strings.ReplaceAll(first, "...", ""), "."):
		full = module + "/" + pat
	}
	re := regexp.QuoteMeta(full)
	if base, ok := strings.CutSuffix(re, `/\.\.\.`); ok {
		re = base + `(/\.\.\.)?`
	}
	compiled[pat] = regexp.MustCompile("^" + strings.ReplaceAll(re, `\.\.\.`, `.*`) + "$")
	return compiled[pat]
}
