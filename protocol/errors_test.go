package protocol

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sealpost/sealpost/protocol/internal/pb"
)

// TestCodeTable checks that the table and code.proto list the same codes
// under the same numbers, and that codes and sentinels map both ways.
func TestCodeTable(t *testing.T) {
	seenName := map[string]bool{}
	seenErr := map[error]bool{}
	for _, c := range codes {
		name, ok := pb.Code_name[int32(c.code)]
		if !ok {
			t.Errorf("%s (%d) is not in code.proto", c.name, c.code)
		}
		if want := "CODE_" + upper(c.name); name != want {
			t.Errorf("code %d is %s in code.proto, %s in the table", c.code, name, c.name)
		}
		if seenName[c.name] || seenErr[c.err] {
			t.Errorf("code %s listed twice", c.name)
		}
		seenName[c.name], seenErr[c.err] = true, true
		if c.code.String() != c.name || !c.code.Known() {
			t.Errorf("Code(%d).String() = %q, Known() = %v", c.code, c.code.String(), c.code.Known())
		}
		if got := c.code.Err(); got != c.err {
			t.Errorf("%s.Err() = %v, want %v", c.code, got, c.err)
		}
		if got := CodeOf(c.err); got != c.code {
			t.Errorf("CodeOf(%v) = %s, want %s", c.err, got, c.code)
		}
		if c.err != nil {
			if got := CodeOf(fmt.Errorf("deliver 7: %w", c.err)); got != c.code {
				t.Errorf("CodeOf(wrapped %v) = %s, want %s", c.err, got, c.code)
			}
		}
		if c.code < 1 || c.code >= 80 {
			t.Errorf("%s = %d: outside the assigned ranges 1-31 (common), 32-63 (relay) and 64-79 (group log)", c.name, c.code)
		}
	}
	if len(codes) != len(pb.Code_name)-1 {
		t.Errorf("code.proto has %d codes, the table %d", len(pb.Code_name)-1, len(codes))
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want Code
	}{
		{nil, CodeOK},
		{ErrTruncated, CodeMalformed},
		{fmt.Errorf("read: %w", ErrTruncated), CodeMalformed},
		{io.ErrUnexpectedEOF, CodeInternal},
		{errors.New("disk on fire"), CodeInternal},
		{errors.Join(errors.New("x"), ErrRateLimited), CodeRateLimited},
	}
	for _, c := range cases {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestUnknownCode(t *testing.T) {
	c := Code(99)
	if c.Known() {
		t.Error("code 99 known")
	}
	if got := c.String(); got != "code(99)" {
		t.Errorf("String() = %q", got)
	}
	if err := c.Err(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Err() = %v, want ErrMalformed", err)
	}
	if Code(0).Known() {
		t.Error("code 0 known")
	}
}
