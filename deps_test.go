package sealpost_test

// The dependency rules of DESIGN.md §1, checked on what `go list -deps`
// reports for the whole module:
//
//   - imports point one way: cmd -> node -> {protocol, store} -> crypto;
//   - crypto/... depends only on the standard library, golang.org/x/crypto
//     (and the golang.org/x/sys it needs) and filippo.io/edwards25519;
//   - only node/... imports libp2p (and multiaddr); crypto, protocol and
//     store do not depend on it at all;
//   - only store/badgerstore imports badger; crypto, protocol and the rest of
//     store do not depend on it;
//   - only protocol/... imports the protobuf runtime.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sealpost/sealpost"

// listedPackage is the part of `go list -json` the rules read.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// layers ranks the module's top-level directories: a package may import
// module packages of a lower rank, or of its own directory.
var layers = map[string]int{
	"crypto":   0,
	"protocol": 1,
	"store":    1,
	"node":     2,
	"cmd":      3,
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
		t.Error(v)
	}
}

// TestDependencyRulesCatch feeds violations() packages that break each rule,
// so the rules above cannot pass by reading nothing.
func TestDependencyRulesCatch(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	pkgs := []listedPackage{
		{ImportPath: "fmt", Standard: true},
		{ImportPath: m("crypto/ratchet"), Imports: []string{"fmt", m("store")}, Deps: []string{"fmt", m("store")}},
		{ImportPath: m("crypto/seal"), Imports: []string{"github.com/example/x"}, Deps: []string{"github.com/example/x"}},
		{ImportPath: m("store"), Imports: []string{m("protocol")}, Deps: []string{m("protocol"), "github.com/libp2p/go-libp2p/core/peer"}},
		{ImportPath: m("store/badgerstore"), Imports: []string{"github.com/dgraph-io/badger/v4"}},
		{ImportPath: m("node"), Imports: []string{"github.com/dgraph-io/badger/v4", "google.golang.org/protobuf/proto", m("cmd/sealpost")}},
		{ImportPath: m("cmd/sealpost"), Imports: []string{"github.com/multiformats/go-multiaddr"}},
		{ImportPath: m("tools/x")},
	}
	got := strings.Join(violations(pkgs), "\n")
	for _, want := range []string{
		"crypto/ratchet imports " + m("store"),
		"crypto/seal depends on github.com/example/x",
		"store imports " + m("protocol"),
		"store depends on github.com/libp2p/go-libp2p/core/peer",
		"node imports github.com/dgraph-io/badger/v4",
		"node imports google.golang.org/protobuf/proto",
		"node imports " + m("cmd/sealpost"),
		"cmd/sealpost imports github.com/multiformats/go-multiaddr",
		"tools/x is in no layer",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("violations do not report %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nstore/badgerstore ") || strings.HasPrefix(got, "store/badgerstore ") {
		t.Errorf("badgerstore importing badger reported as a violation:\n%s", got)
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

// violations returns one line per broken rule.
func violations(pkgs []listedPackage) []string {
	std := map[string]bool{}
	for _, p := range pkgs {
		if p.Standard {
			std[p.ImportPath] = true
		}
	}
	var v []string
	for _, p := range pkgs {
		rel, ok := moduleRel(p.ImportPath)
		if !ok {
			continue
		}
		if p.Error != nil {
			v = append(v, fmt.Sprintf("%s: %s", rel, p.Error.Err))
		}
		area := strings.SplitN(rel, "/", 2)[0]
		rank, ok := layers[area]
		if !ok {
			if rel != "" { // the root holds only this test
				v = append(v, fmt.Sprintf("%s is in no layer of DESIGN.md §1 (cmd, node, protocol, store, crypto)", rel))
			}
			continue
		}
		for _, imp := range p.Imports {
			if irel, ok := moduleRel(imp); ok {
				iarea := strings.SplitN(irel, "/", 2)[0]
				if irank, known := layers[iarea]; iarea != area && (!known || irank >= rank) {
					v = append(v, fmt.Sprintf("%s imports %s: imports point cmd -> node -> {protocol, store} -> crypto", rel, imp))
				}
				continue
			}
			if isLibp2p(imp) && area != "node" {
				v = append(v, fmt.Sprintf("%s imports %s: only node/... imports libp2p", rel, imp))
			}
			if isBadger(imp) && !underDir(rel, "store/badgerstore") {
				v = append(v, fmt.Sprintf("%s imports %s: only store/badgerstore imports badger", rel, imp))
			}
			if strings.HasPrefix(imp, "google.golang.org/protobuf/") && area != "protocol" {
				v = append(v, fmt.Sprintf("%s imports %s: protobuf stays inside protocol/", rel, imp))
			}
		}
		for _, dep := range p.Deps {
			if std[dep] {
				continue
			}
			if _, ok := moduleRel(dep); ok {
				continue // checked as an import of the package that imports it
			}
			switch {
			case area == "crypto" && !cryptoMayUse(dep):
				v = append(v, fmt.Sprintf("%s depends on %s: crypto/ uses only the standard library, golang.org/x/crypto and filippo.io/edwards25519", rel, dep))
			case (area == "crypto" || area == "protocol" || area == "store") && isLibp2p(dep):
				v = append(v, fmt.Sprintf("%s depends on %s: only node/... uses libp2p", rel, dep))
			case (area == "crypto" || area == "protocol" || area == "store") && isBadger(dep) && !underDir(rel, "store/badgerstore"):
				v = append(v, fmt.Sprintf("%s depends on %s: only store/badgerstore uses badger", rel, dep))
			}
		}
	}
	slices.Sort(v)
	return slices.Compact(v)
}

// moduleRel returns path relative to the module ("" for the root).
func moduleRel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

func underDir(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

func isLibp2p(path string) bool {
	return strings.HasPrefix(path, "github.com/libp2p/") || strings.HasPrefix(path, "github.com/multiformats/")
}

func isBadger(path string) bool { return strings.HasPrefix(path, "github.com/dgraph-io/") }

func cryptoMayUse(path string) bool {
	for _, prefix := range []string{"golang.org/x/crypto/", "golang.org/x/sys/", "filippo.io/edwards25519"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}
