package files_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sealpost/sealpost/crypto/attachment"
	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/protocol"
)

// badOptions fail fast: short timeouts, few attempts.
func badOptions() files.Options {
	opt := testOptions()
	opt.IOTimeout = time.Second
	opt.FailAfter = 2
	return opt
}

// refused waits until file id at n has failed, and checks that its
// content cannot be read.
func refused(t *testing.T, n *tnode, id, why string) {
	t.Helper()
	info := waitState(t, n, id, "failed", 30*time.Second)
	if !strings.Contains(info.Error, why) {
		t.Fatalf("failed with %q, want it to say %q", info.Error, why)
	}
	if _, err := n.svc.Open(context.Background(), id); !errors.Is(err, files.ErrNotSaved) {
		t.Fatalf("Open of a refused file: %v", err)
	}
}

// TestLyingPointer: a pointer whose digest or size lies is refused after
// the download, and its ciphertext removed.
func TestLyingPointer(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(f *protocol.File)
		why    string
	}{
		{"digest", func(f *protocol.File) { f.Digest[0] ^= 1 }, "does not match its digest"},
		{"size smaller", func(f *protocol.File) { f.Size -= 100 }, "longer than the announced size"},
		{"size larger", func(f *protocol.File) { f.Size += 100 }, "does not match its digest"},
		// Capabilities derive from the key: the sender does not know them.
		{"key", func(f *protocol.File) { f.Key[0] ^= 1 }, "not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			alice := newNode(t, "alice", testOptions())
			bob := newNode(t, "bob", badOptions())
			connect(alice, bob, nil)
			alice.msg.mutate = c.mutate
			data := randomBytes(300_000, 6)
			if l1, l2 := attachment.PaddedSize(300_000), attachment.PaddedSize(300_100); l1 != l2 {
				t.Fatal("the sizes are in different buckets")
			}
			info := send(t, alice, "bob", data, "x.bin")
			refused(t, bob, info.ID, c.why)
			if c.name == "key" {
				return // refused by the sender: the partial download stays for a retry
			}
			if _, err := os.Stat(filepath.Join(bob.dir, "files", info.ID+".enc")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the refused file's ciphertext is still there: %v", err)
			}
		})
	}
}

// TestBadRelay: a relay whose copy of a blob was altered (a bit flip on
// its disk) or substituted is refused blob by blob: the file never counts
// that blob, and fails once the attempts run out.
func TestBadRelay(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, blobs []string)
	}{
		{"bit flip", func(t *testing.T, blobs []string) {
			b, err := os.ReadFile(blobs[0])
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x10
			os.WriteFile(blobs[0], b, 0o600)
		}},
		{"substituted", func(t *testing.T, blobs []string) {
			b, err := os.ReadFile(blobs[1])
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(blobs[0], b[:min(len(b), fileSize(t, blobs[0]))], 0o600)
		}},
		{"truncated", func(t *testing.T, blobs []string) {
			os.Truncate(blobs[0], 1000)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRelay(t, blobrelay.DefaultResources())
			alice := newNode(t, "alice", testOptions())
			bob := newNode(t, "bob", badOptions())
			connect(alice, bob, r)
			bob.stop()
			alice.msg.offline = true
			info := send(t, alice, "bob", randomBytes(1<<20, 7), "x.bin")
			waitState(t, alice, info.ID, "sent", 30*time.Second)
			var blobs []string
			filepath.Walk(filepath.Join(r.dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && len(filepath.Base(p)) == 64 {
					blobs = append(blobs, p)
				}
				return nil
			})
			if len(blobs) < 2 {
				t.Fatalf("%d blobs on the relay", len(blobs))
			}
			c.damage(t, blobs)
			alice.stop() // no direct source: the relay alone
			bob.start()
			alice.msg.deliverQueued()
			info = waitState(t, bob, info.ID, "failed", 30*time.Second)
			if info.Have == info.Blobs {
				t.Fatalf("every blob counted: %+v", info)
			}
			if _, err := bob.svc.Open(context.Background(), info.ID); !errors.Is(err, files.ErrNotSaved) {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

func fileSize(t *testing.T, p string) int {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// TestBadPeer: a sender's device that answers with blobs larger than
// announced, in the wrong order, or that stops in the middle of one, is
// refused; nothing it sent counts.
func TestBadPeer(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(str network.Stream, req *protocol.BlobRequest, all [][]byte)
		why   string
	}{
		{"larger than announced", func(str network.Stream, req *protocol.BlobRequest, all [][]byte) {
			b := find(all, req.Hash)
			protocol.WriteFrame(str, &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Size: int64(len(b)) + 1})
			str.Write(append(b, 0))
		}, "announced as"},
		{"reordered", func(str network.Stream, req *protocol.BlobRequest, all [][]byte) {
			var other []byte
			for _, b := range all {
				if attachment.HashBlob(b) != req.Hash && len(b) == len(find(all, req.Hash)) {
					other = b
				}
			}
			protocol.WriteFrame(str, &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Size: int64(len(other))})
			str.Write(other)
		}, "does not match its hash"},
		{"endless", func(str network.Stream, req *protocol.BlobRequest, all [][]byte) {
			b := find(all, req.Hash)
			protocol.WriteFrame(str, &protocol.BlobResponse{ID: req.ID, Op: req.Op, Code: protocol.CodeOK, Size: int64(len(b))})
			str.Write(b[:len(b)/2])
			time.Sleep(3 * time.Second) // then nothing: the reader's deadline ends it
		}, "deadline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			alice := newNode(t, "alice", testOptions())
			bob := newNode(t, "bob", badOptions())
			connect(alice, bob, nil)
			evil := newHost(t)
			defer evil.Close()
			alice.msg.mutate = func(f *protocol.File) {
				f.Peer = &protocol.FilePeer{Peer: []byte(evil.ID())}
				for _, a := range evil.Addrs() {
					f.Peer.Addrs = append(f.Peer.Addrs, a.Bytes())
				}
			}
			evil.SetStreamHandler(libp2pproto.ID(protocol.BlobProtocol), func(str network.Stream) {
				defer str.Reset()
				all := aliceBlobs(t, alice)
				fr := protocol.NewFrameReader(str, protocol.MaxBlobFrame)
				for {
					var req protocol.BlobRequest
					if err := fr.Read(&req); err != nil {
						return
					}
					c.serve(str, &req, all)
				}
			})
			info := send(t, alice, "bob", randomBytes(1<<20, 8), "x.bin")
			got := waitState(t, bob, info.ID, "failed", 60*time.Second)
			if got.Have != 0 {
				t.Fatalf("%d blobs of a bad peer counted", got.Have)
			}
			if !strings.Contains(got.Error, c.why) {
				t.Fatalf("failed with %q, want %q", got.Error, c.why)
			}
		})
	}
}

// aliceBlobs cuts the ciphertext of the one file alice sent into its
// blobs.
func aliceBlobs(t *testing.T, alice *tnode) [][]byte {
	paths, _ := filepath.Glob(filepath.Join(alice.dir, "files", "*.enc"))
	if len(paths) != 1 {
		t.Errorf("%d files sent", len(paths))
		return nil
	}
	ct, err := os.ReadFile(paths[0])
	if err != nil {
		t.Error(err)
		return nil
	}
	var out [][]byte
	for size := int64(0); size < 1<<30; size = attachment.PaddedSize(size + 1) {
		if l, _ := attachment.NewLayout(size); l.CiphertextSize() == int64(len(ct)) {
			for i := range l.Blobs {
				out = append(out, ct[l.BlobOffset(i):l.BlobOffset(i)+l.BlobSize(i)])
			}
			return out
		}
	}
	t.Error("no layout of that ciphertext size")
	return nil
}

func find(all [][]byte, h attachment.Hash) []byte {
	for _, b := range all {
		if attachment.HashBlob(b) == h {
			return b
		}
	}
	return nil
}
