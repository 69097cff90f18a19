package files_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sealpost/sealpost/node/blobrelay"
	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// libp2p and badger keep process-wide workers.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// testOptions are quick retries, so that tests do not wait for backoff.
func testOptions() files.Options {
	return files.Options{RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, RelayFallback: time.Hour}
}

// TestDirect sends a file to a recipient that is online: it fetches the
// blobs from the sender's device, the relay gets nothing, and the sender
// learns that the recipient has every blob.
func TestDirect(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	alice := newNode(t, "alice", testOptions())
	bob := newNode(t, "bob", testOptions())
	connect(alice, bob, r)
	data := randomBytes(3<<20+12345, 1)
	info := send(t, alice, "bob", data, "photo.jpg")
	if info.MIME != "image/jpeg" || info.Name != "photo.jpg" || info.Size != int64(len(data)) {
		t.Fatalf("sent file: %+v", info)
	}
	got := waitState(t, bob, info.ID, "saved", 30*time.Second)
	if got.Outgoing || got.Have != got.Blobs || got.Digest != info.Digest {
		t.Fatalf("received file: %+v", got)
	}
	if !bytes.Equal(content(t, bob, info.ID), data) {
		t.Fatal("received content differs")
	}
	// The recipient's acknowledgements reach the sender.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := alice.svc.Get(context.Background(), info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if out.Have == out.Blobs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sender knows of %d of %d blobs fetched", out.Have, out.Blobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tot := r.totals(); tot.Refs != 0 {
		t.Fatalf("the relay holds %+v for a file fetched directly", tot)
	}
	// The sender can read its own file back.
	if !bytes.Equal(content(t, alice, info.ID), data) {
		t.Fatal("sent content differs")
	}
}

// TestThroughRelay sends a file to a recipient that is offline: the blobs
// go to its relay, then the pointer; when the recipient starts, it
// downloads them from the relay and acknowledges them, which frees the
// relay.
func TestThroughRelay(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	alice := newNode(t, "alice", testOptions())
	bob := newNode(t, "bob", testOptions())
	connect(alice, bob, r)
	bob.stop()
	alice.msg.offline = true
	data := randomBytes(1<<20+77, 2)
	info := send(t, alice, "bob", data, "notes.txt")
	waitState(t, alice, info.ID, "sent", 30*time.Second)
	if tot := r.totals(); tot.Refs != uint64(info.Blobs) || tot.Blobs != uint64(info.Blobs) {
		t.Fatalf("relay totals %+v, want %d blobs", tot, info.Blobs)
	}
	bob.start()
	alice.msg.deliverQueued()
	waitState(t, bob, info.ID, "saved", 30*time.Second)
	if !bytes.Equal(content(t, bob, info.ID), data) {
		t.Fatal("received content differs")
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.totals().Refs != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("relay still holds %+v after the recipient's acknowledgements", r.totals())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLargeWaits: a file over the automatic download size waits for
// Download.
func TestLargeWaits(t *testing.T) {
	opt := testOptions()
	opt.AutoDownload = 100 << 10
	alice := newNode(t, "alice", testOptions())
	bob := newNode(t, "bob", opt)
	connect(alice, bob, nil)
	info := send(t, alice, "bob", randomBytes(200<<10, 3), "big.bin")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := bob.svc.Get(context.Background(), info.ID)
		if err == nil {
			if got.State != "queued" {
				t.Fatalf("a file over the automatic size is %s", got.State)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pointer did not arrive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := bob.svc.Get(context.Background(), info.ID); got.State != "queued" || got.Have != 0 {
		t.Fatalf("a file over the automatic size was downloaded: %+v", got)
	}
	if _, err := bob.svc.Open(context.Background(), info.ID); !errors.Is(err, files.ErrNotSaved) {
		t.Fatalf("Open before the download: %v", err)
	}
	if _, err := bob.svc.Download(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, bob, info.ID, "saved", 30*time.Second)
}

// TestDownloadAsked asks for files over the automatic size as soon as
// their pointers arrive, while the engine is still deciding about them:
// the request is never undone by the engine's decision not to download.
func TestDownloadAsked(t *testing.T) {
	opt := testOptions()
	opt.AutoDownload = 1 << 10
	alice := newNode(t, "alice", testOptions())
	bob := newNode(t, "bob", opt)
	connect(alice, bob, nil)
	var ids []string
	for i := range 30 {
		info := send(t, alice, "bob", randomBytes(4<<10, uint64(100+i)), "asked.bin")
		// Ask as soon as the pointer is in bob's store (his engine was
		// woken by its arrival).
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := bob.svc.Download(context.Background(), info.ID)
			if err == nil {
				break
			}
			if !errors.Is(err, files.ErrUnknownFile) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		ids = append(ids, info.ID)
	}
	for _, id := range ids {
		waitState(t, bob, id, "saved", 30*time.Second)
	}
}

// TestLimits: the node's size limit and bad metadata are refused before
// anything is written.
func TestLimits(t *testing.T) {
	opt := testOptions()
	opt.MaxSize = 1000
	alice := newNode(t, "alice", opt)
	bob := newNode(t, "bob", testOptions())
	connect(alice, bob, nil)
	ctx := context.Background()
	_, err := alice.svc.Send(ctx, files.SendRequest{To: "bob", Body: bytes.NewReader(make([]byte, 1001)), Size: 1001})
	if !errors.Is(err, files.ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	for _, name := range []string{"../etc/passwd", "a\nb", "x\u202etxt.exe", ".."} {
		_, err := alice.svc.Send(ctx, files.SendRequest{To: "bob", Body: bytes.NewReader([]byte("x")), Size: 1, Meta: files.FileMeta{Name: name}})
		if !errors.Is(err, files.ErrBadInput) {
			t.Fatalf("name %q: %v", name, err)
		}
	}
	// A body shorter or longer than announced.
	for _, n := range []int{9, 11} {
		_, err := alice.svc.Send(ctx, files.SendRequest{To: "bob", Body: bytes.NewReader(make([]byte, n)), Size: 10})
		if !errors.Is(err, files.ErrBadInput) {
			t.Fatalf("body of %d bytes for 10: %v", n, err)
		}
	}
	if l, _ := alice.svc.List(ctx, 0); len(l) != 0 {
		t.Fatalf("refused files were recorded: %+v", l)
	}
}

// waitRefs waits until the relay holds at least n references.
func waitRefs(t testing.TB, r *trelay, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.totals().Refs < n {
		if time.Now().After(deadline) {
			t.Fatalf("the relay holds %d references, waited for %d", r.totals().Refs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUploadResumes kills the relay, then the sender, in the middle of an
// upload: the upload resumes each time, the file arrives whole, and no
// blob the relay acknowledged is sent again (the relay stores each blob's
// bytes once, plus at most the uploads in flight at each kill, which were
// not acknowledged).
func TestUploadResumes(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	opt := testOptions()
	opt.Window = 1
	alice := newNode(t, "alice", opt)
	bob := newNode(t, "bob", testOptions())
	connect(alice, bob, r)
	bob.stop()
	alice.msg.offline = true
	data := randomBytes(60*256<<10, 4) // about 60 blobs
	info := send(t, alice, "bob", data, "video.mp4")

	var written float64 // blob bytes the relay wrote, over its restarts
	waitRefs(t, r, 10)
	written += r.counter("sealpost_relay_attachment_put_bytes_total")
	r.stop()
	time.Sleep(100 * time.Millisecond)
	r.start()

	waitRefs(t, r, 30)
	alice.stop()
	written += r.counter("sealpost_relay_attachment_put_bytes_total")
	r.stop()
	r.start()
	alice.start()

	waitState(t, alice, info.ID, "sent", 60*time.Second)
	written += r.counter("sealpost_relay_attachment_put_bytes_total")
	size := float64(len(data)) * 1.06 // padding and tags
	if written > size+2*float64(opt.Window)*(256<<10+64) {
		t.Fatalf("the relay wrote %.0f bytes for a file of about %.0f", written, size)
	}
	if tot := r.totals(); tot.Blobs != uint64(info.Blobs) || tot.Refs != uint64(info.Blobs) {
		t.Fatalf("relay totals %+v, want %d blobs", tot, info.Blobs)
	}
	bob.start()
	alice.msg.deliverQueued()
	waitState(t, bob, info.ID, "saved", 60*time.Second)
	if !bytes.Equal(content(t, bob, info.ID), data) {
		t.Fatal("received content differs")
	}
}

// TestDownloadResumes stops the recipient in the middle of a download from
// the relay: it resumes at the blobs it had committed.
func TestDownloadResumes(t *testing.T) {
	r := newRelay(t, blobrelay.DefaultResources())
	alice := newNode(t, "alice", testOptions())
	opt := testOptions()
	opt.Window = 1
	bob := newNode(t, "bob", opt)
	connect(alice, bob, r)
	bob.stop()
	alice.msg.offline = true
	data := randomBytes(80*256<<10, 5)
	info := send(t, alice, "bob", data, "")
	waitState(t, alice, info.ID, "sent", 60*time.Second)
	sentBefore := r.counter("sealpost_relay_attachment_get_bytes_total")
	bob.start()
	alice.msg.deliverQueued()
	waitState(t, bob, info.ID, "queued", 10*time.Second) // over the automatic size
	if _, err := bob.svc.Download(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := bob.svc.Get(context.Background(), info.ID)
		if err == nil && got.Have >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the download did not start: %+v, %v", got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	bob.stop()
	bob.start()
	waitState(t, bob, info.ID, "saved", 60*time.Second)
	if !bytes.Equal(content(t, bob, info.ID), data) {
		t.Fatal("received content differs")
	}
	served := r.counter("sealpost_relay_attachment_get_bytes_total") - sentBefore
	if max := float64(len(data))*1.06 + float64(4<<20) + 2*(256<<10+64); served > max {
		t.Fatalf("the relay served %.0f bytes for a file of %d", served, len(data))
	}
}

// TestRelayRefusals: a relay that does not know the recipient's deposit
// token yet (the recipient's node gives its card and registers the token
// independently, and may go offline in between) refuses the upload with
// token_refused; the file is retried with the backoff, shows failed after
// Options.FailAfter attempts, and goes once the token is there. A relay
// that refuses a blob as too large refuses it for good: the file fails
// and is not retried.
func TestRelayRefusals(t *testing.T) {
	t.Run("token not registered yet", func(t *testing.T) {
		r := newRelay(t, blobrelay.DefaultResources())
		alice := newNode(t, "alice", testOptions())
		bob := newNode(t, "bob", testOptions())
		connect(alice, bob, r)
		late := r.box()
		late.Token = bytes.Repeat([]byte{9}, 16)
		alice.msg.mu.Lock()
		alice.msg.boxes = []protocol.Mailbox{late}
		alice.msg.offline = true
		alice.msg.mu.Unlock()
		bob.stop()
		data := randomBytes(700<<10, 8)
		info := send(t, alice, "bob", data, "late.bin")
		got := waitState(t, alice, info.ID, "failed", 30*time.Second)
		if !strings.Contains(got.Error, "deposit token refused") {
			t.Fatalf("failed with %q, want the relay's token refusal", got.Error)
		}
		if r.totals().Refs != 0 {
			t.Fatalf("the relay holds %+v", r.totals())
		}
		// The recipient's node registers the token.
		err := r.st.Update(context.Background(), func(tx *store.Tx) error {
			_, _, err := tx.Relay().PutToken(r.mailbox, store.RelayToken{Hash: protocol.HashToken(late.Token), CreatedAt: time.Now()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got = waitState(t, alice, info.ID, "sent", 30*time.Second)
		if got.Error != "" || len(got.Relays) != 1 || got.Relays[0].Done != got.Blobs {
			t.Fatalf("sent file: %+v", got)
		}
		bob.start()
		alice.msg.deliverQueued()
		waitState(t, bob, info.ID, "saved", 30*time.Second)
		if !bytes.Equal(content(t, bob, info.ID), data) {
			t.Fatal("received content differs")
		}
	})
	t.Run("blob too large", func(t *testing.T) {
		res := blobrelay.DefaultResources()
		res.MaxBlob = 64 << 10
		r := newRelay(t, res)
		alice := newNode(t, "alice", testOptions())
		bob := newNode(t, "bob", testOptions())
		connect(alice, bob, r)
		alice.msg.offline = true
		bob.stop()
		info := send(t, alice, "bob", randomBytes(700<<10, 9), "big.bin")
		got := waitState(t, alice, info.ID, "failed", 30*time.Second)
		if !strings.Contains(got.Error, "every relay refused") || !strings.Contains(got.Error, "too large") {
			t.Fatalf("failed with %q", got.Error)
		}
		// Refused for good: the file has no transfer work left.
		err := alice.st.View(context.Background(), func(tx *store.Tx) error {
			ids, err := tx.Files().Pending()
			if len(ids) != 0 {
				t.Errorf("pending after the final refusal: %v", ids)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
