package protocol

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Version is the version of every structure this package encodes and the
// only one it decodes. Field 1 of every top-level message holds it.
const Version = 1

// Message is a wire message: every type of this package that travels on its
// own (in a frame, a ratchet message or a link). Marshal validates before it
// encodes; Unmarshal validates after it decodes, so a value that came out of
// Unmarshal needs no further check.
type Message interface {
	Marshal() ([]byte, error)
	Unmarshal(b []byte) error
	Validate() error

	// wire converts to the generated type, without validating.
	wire() proto.Message
	// limit is the largest encoding of the type.
	limit() int
	// kind names the type in errors.
	kind() string
}

// encode appends the canonical encoding of m to dst.
func encode(dst []byte, m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	p := m.wire()
	opts := proto.MarshalOptions{Deterministic: true}
	if n := opts.Size(p); n > m.limit() {
		return dst, fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, m.kind(), n, m.limit())
	}
	opts.UseCachedSize = true
	out, err := opts.MarshalAppend(dst, p)
	if err != nil {
		return dst, fmt.Errorf("%w: %s: %v", ErrMalformed, m.kind(), err)
	}
	return out, nil
}

// decode parses b into p, the generated type of a message named kind whose
// encoding is at most limit bytes. It accepts exactly the canonical encoding
// of a version-1 message: the size is checked before anything is parsed; a
// different version is reported as ErrUnsupportedVersion before the rest is
// looked at (a newer message may have fields this version does not know);
// unknown fields, repeated scalar fields, fields out of order, default values
// written out and overlong varints are ErrMalformed. Validation of the
// fields' values is left to the caller's conversion.
func decode(b []byte, limit int, kind string, p proto.Message) error {
	return decodeVersions(b, limit, kind, Version, p)
}

// decodeVersions is decode for a message that has versions 1 to newest
// (the caller checks that the fields match the version).
func decodeVersions(b []byte, limit int, kind string, newest uint64, p proto.Message) error {
	if len(b) > limit {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, kind, len(b), limit)
	}
	if err := checkVersion(b, kind, newest); err != nil {
		return err
	}
	if err := (proto.UnmarshalOptions{}).Unmarshal(b, p); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, kind, err)
	}
	if hasUnknown(p.ProtoReflect()) {
		return fmt.Errorf("%w: %s: unknown fields", ErrMalformed, kind)
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil || !bytes.Equal(again, b) {
		return fmt.Errorf("%w: %s: not in canonical encoding", ErrMalformed, kind)
	}
	return nil
}

// checkVersion looks for field 1 (the version) among the top-level fields
// of b. Absent or zero is ErrMalformed, a value above newest
// ErrUnsupportedVersion. A b that does not parse is left for the full
// decoder to report.
func checkVersion(b []byte, kind string, newest uint64) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil
			}
			if v == 0 {
				break
			}
			if v > newest {
				return fmt.Errorf("%w: %s version %d (this node speaks %d)", ErrUnsupportedVersion, kind, v, newest)
			}
			return nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil
		}
		b = b[n:]
	}
	return fmt.Errorf("%w: %s: version missing", ErrMalformed, kind)
}

// hasUnknown reports whether m or a message inside it holds unknown fields.
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = hasUnknown(l.Get(i).Message())
			}
		} else {
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}
