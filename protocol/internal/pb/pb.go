// Package pb holds the protobuf messages of sealpost's wire protocols,
// generated from the .proto files next to it. Only package protocol uses it;
// everything else sees protocol's hand-written types.
//
// Regenerate with `go generate ./protocol/...` after editing a .proto file.
// It needs protoc 3.21 (Debian's protobuf-compiler 3.21.12 was used) and
// protoc-gen-go v1.36.12 (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)
// on PATH; CI needs neither, because the generated files are committed.
// The .proto paths are given relative to the module root, so that the names
// registered with the protobuf runtime ("protocol/internal/pb/msg.proto")
// cannot collide with another module's.
package pb

//go:generate protoc --proto_path=../../.. --go_out=../../.. --go_opt=paths=source_relative protocol/internal/pb/code.proto protocol/internal/pb/msg.proto protocol/internal/pb/plaintext.proto protocol/internal/pb/card.proto protocol/internal/pb/bundle.proto protocol/internal/pb/invite.proto protocol/internal/pb/relay.proto protocol/internal/pb/file.proto protocol/internal/pb/blob.proto protocol/internal/pb/group.proto
