package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// TestTableBytesDistinct: no two tables of keys.go share a table byte (two
// features that take "the next free one" at once must not collide).
func TestTableBytesDistinct(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "keys.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]string{}
	n := 0
	ast.Inspect(f, func(x ast.Node) bool {
		vs, ok := x.(*ast.ValueSpec)
		if !ok || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.INT {
			return true
		}
		v, err := strconv.ParseUint(lit.Value, 0, 8)
		if err != nil {
			t.Fatalf("%s: %v", vs.Names[0], err)
		}
		name := vs.Names[0].Name
		if other, dup := seen[v]; dup {
			t.Errorf("%s and %s are both table %#02x", other, name, v)
		}
		seen[v] = name
		n++
		return true
	})
	if n < 40 {
		t.Fatalf("read only %d tables from keys.go", n)
	}
}
