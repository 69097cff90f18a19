package sealpost_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// labelPattern matches a domain label of the protocol.
var labelPattern = regexp.MustCompile(`^sealpost/v[0-9]+/[a-z0-9/-]+$`)

// TestLabelsDocumented keeps the code's domain labels and the table of
// docs/PROTOCOL.md §1.2 together: every label string in the module's Go
// code (tests aside) is in the table, every label of the table is in the
// code, and no label is a prefix of another, as the section says.
func TestLabelsDocumented(t *testing.T) {
	code, err := codeLabels(".")
	if err != nil {
		t.Fatal(err)
	}
	// Unexported constants and labels outside crypto/ are found too.
	for _, l := range []string{"sealpost/v1/dr/hash", "sealpost/v1/seal", "sealpost/v1/invite-card", "sealpost/v1/relay-owner"} {
		if !slices.Contains(code, l) {
			t.Fatalf("the code's labels %q do not include %q", code, l)
		}
	}
	doc, err := os.ReadFile(filepath.Join("docs", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := labelTable(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range code {
		if !slices.Contains(table, l) {
			t.Errorf("label %q is used in the code but not in PROTOCOL.md §1.2", l)
		}
	}
	for _, l := range table {
		if !slices.Contains(code, l) {
			t.Errorf("PROTOCOL.md §1.2 lists %q, which no code uses", l)
		}
	}
	for _, a := range table {
		for _, b := range table {
			if a != b && strings.HasPrefix(b, a) {
				t.Errorf("label %q is a prefix of %q", a, b)
			}
		}
	}
}

// codeLabels returns the distinct label strings of the non-test Go files
// under root, sorted.
func codeLabels(root string) ([]string, error) {
	var labels []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && labelPattern.MatchString(s) {
				labels = append(labels, s)
			}
			return true
		})
		return nil
	})
	slices.Sort(labels)
	return slices.Compact(labels), err
}

// labelTable returns the labels of the table in PROTOCOL.md §1.2: the
// first cell of each row, in backquotes.
func labelTable(doc string) ([]string, error) {
	_, rest, ok := strings.Cut(doc, "\n### 1.2 Labels\n")
	if !ok {
		return nil, errNoSection
	}
	section, _, _ := strings.Cut(rest, "\n### ")
	var labels []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		if l, ok := strings.CutPrefix(strings.TrimSpace(cells[1]), "`"); ok {
			l = strings.TrimSuffix(l, "`")
			if labelPattern.MatchString(l) {
				labels = append(labels, l)
			}
		}
	}
	if len(labels) == 0 {
		return nil, errNoSection
	}
	return labels, nil
}

var errNoSection = errors.New("docs/PROTOCOL.md has no label table in §1.2")
