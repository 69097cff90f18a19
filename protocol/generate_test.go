package protocol

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireProtocEnv, when set (CI sets it, having installed both), makes
// TestGeneratedCodeFresh fail instead of skip without protoc or
// protoc-gen-go.
const requireProtocEnv = "SEALPOST_REQUIRE_PROTOC"

// TestGeneratedCodeFresh regenerates internal/pb into a temporary directory
// with the go:generate command of internal/pb/pb.go and compares, all but
// the line naming protoc's version. Without protoc and protoc-gen-go it
// skips, unless SEALPOST_REQUIRE_PROTOC is set.
func TestGeneratedCodeFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc")
	}
	missing := t.Skip
	if os.Getenv(requireProtocEnv) != "" {
		missing = t.Fatal
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		missing("protoc not installed")
	}
	plugin, err := exec.LookPath("protoc-gen-go")
	if err != nil {
		home, _ := os.UserHomeDir()
		plugin = filepath.Join(home, "go", "bin", "protoc-gen-go")
		if _, err := os.Stat(plugin); err != nil {
			missing("protoc-gen-go not installed")
		}
	}
	src, err := os.ReadFile(filepath.Join("internal", "pb", "pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate protoc "); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) == 0 {
		t.Fatal("no go:generate protoc line in internal/pb/pb.go")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var protos []string
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--proto_path="):
			args[i] = "--proto_path=" + root
		case strings.HasPrefix(a, "--go_out="):
			args[i] = "--go_out=" + out
		case strings.HasSuffix(a, ".proto"):
			protos = append(protos, a)
		}
	}
	cmd := exec.Command(protoc, append([]string{"--plugin=protoc-gen-go=" + plugin}, args...)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, p := range protos {
		gen := strings.TrimSuffix(p, ".proto") + ".pb.go"
		want, err := os.ReadFile(filepath.Join(out, gen))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, gen))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withoutProtocVersion(got), withoutProtocVersion(want)) {
			t.Errorf("%s is not what protoc makes of %s: run go generate ./protocol/...", gen, p)
		}
	}
	committed, _ := filepath.Glob(filepath.Join("internal", "pb", "*.pb.go"))
	if len(committed) != len(protos) {
		t.Errorf("%d .pb.go files, %d .proto files on the go:generate line", len(committed), len(protos))
	}
}

// withoutProtocVersion is a generated file without the comment line that
// names protoc's version, which follows the machine's package, not the
// .proto files.
func withoutProtocVersion(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("// \tprotoc ")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
