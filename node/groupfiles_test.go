package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node/files"
	"github.com/sealpost/sealpost/node/groups"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/store"
)

// fileMember is a group member with a file service whose store outlives
// its node, so it can stop and start again.
type fileMember struct {
	t    *testing.T
	st   store.Store
	dir  string
	boot string
	n    *Node
}

func newFileMember(t *testing.T, relay *Node) *fileMember {
	t.Helper()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	if err := Provision(context.Background(), st, "test", nil); err != nil {
		t.Fatal(err)
	}
	m := &fileMember{t: t, st: st, dir: t.TempDir(), boot: relay.Info().Addrs[0]}
	m.start()
	return m
}

func (m *fileMember) start() {
	m.t.Helper()
	cfg, err := Defaults(Test)
	if err != nil {
		m.t.Fatal(err)
	}
	cfg.Store, cfg.DataDir, cfg.Bootstrap = m.st, m.dir, []string{m.boot}
	cfg.Groups.ReceiptDelay = 100 * time.Millisecond
	cfg.Groups.FetchGrace = 100 * time.Millisecond
	n, err := New(context.Background(), cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	m.n = n
	m.t.Cleanup(func() { n.Close() })
}

func (m *fileMember) stop() {
	m.t.Helper()
	if err := m.n.Close(); err != nil {
		m.t.Fatal(err)
	}
}

// fileSum reads a saved file's content and returns its SHA-256.
func fileSum(t *testing.T, ctx context.Context, n *Node, id string) [32]byte {
	t.Helper()
	c, err := n.Files().Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// waitSaved waits until n holds file id saved.
func waitSaved(t *testing.T, ctx context.Context, n *Node, id string) {
	t.Helper()
	nodetest.WaitFor(t, 2*time.Minute, "the file saved", func() bool {
		f, err := n.Files().Get(ctx, id)
		return err == nil && f.State == "saved"
	})
}

// TestGroupFile: a file sent to a group of four is encrypted once and its
// blobs go once to the group's home relay. b, online, fetches it from the
// sender's device; c, offline when it was sent, comes back after the
// sender stopped and fetches it from the home. d, removed from the group
// before the file was sent, gets neither the message nor the file (its
// key travels only in the pointer, which goes to the members of the
// epoch it is sent in). Members' downloads leave the blobs at the relay.
func TestGroupFile(t *testing.T) {
	nodetest.CheckLeaks(t)
	relay := newTestNode(t, func(c *Config) { c.RelayService = true; c.DataDir = t.TempDir() })
	a, b, c, d := newFileMember(t, relay), newFileMember(t, relay), newFileMember(t, relay), newFileMember(t, relay)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for _, x := range []struct {
		m    *fileMember
		name string
	}{{b, "b"}, {c, "c"}, {d, "d"}} {
		befriend(t, ctx, a.n, x.m.n, x.name)
	}
	info, err := a.n.Groups().Create(ctx, "club", []string{relay.Info().Addrs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.n.Groups().Add(ctx, "club", []string{"b", "c", "d"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ctx, info.ID, 4, a.n, b.n, c.n, d.n)
	if _, err := a.n.Groups().Remove(ctx, info.ID, []string{"d"}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, time.Minute, "d removed", func() bool {
		g, err := d.n.Groups().Show(ctx, info.ID)
		return err == nil && g.State == "left"
	})
	waitMembers(t, ctx, info.ID, 3, a.n, b.n, c.n)
	c.stop()

	content := make([]byte, 3<<20+12345)
	rand.Read(content)
	want := sha256.Sum256(content)
	sent, err := a.n.Files().SendGroup(ctx, files.GroupSendRequest{Group: "club", Body: bytes.NewReader(content),
		Size: int64(len(content)), Meta: files.FileMeta{Name: "holiday.bin", MIME: "application/octet-stream"}, Caption: "for the club"})
	if err != nil {
		t.Fatal(err)
	}
	if sent.Group != info.ID || sent.Peer != "" {
		t.Errorf("sent file: group %q peer %q", sent.Group, sent.Peer)
	}

	// b is online: the message comes with the file, saved and equal.
	waitSaved(t, ctx, b.n, sent.ID)
	if got := fileSum(t, ctx, b.n, sent.ID); got != want {
		t.Fatal("b's file differs from the one sent")
	}
	ms, err := b.n.Groups().Messages(ctx, info.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m groups.Message) bool { return m.ID == sent.ID })
	if i < 0 || ms[i].Text != "for the club" || ms[i].File == nil || ms[i].File.Name != "holiday.bin" ||
		ms[i].File.Size != int64(len(content)) || ms[i].File.State != "saved" {
		t.Fatalf("b's messages: %+v", ms)
	}

	// The home holds every blob, once; then the sender stops, so c can
	// only take the file from the home.
	nodetest.WaitFor(t, 2*time.Minute, "the home holds every blob", func() bool {
		f, err := a.n.Files().Get(ctx, sent.ID)
		return err == nil && len(f.Relays) == 1 && f.Relays[0].Done == f.Blobs
	})
	held, err := relay.Blobs().Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if held.Blobs != uint64(sent.Blobs) || held.Refs != uint64(sent.Blobs) {
		t.Fatalf("the relay holds %+v for a file of %d blobs", held, sent.Blobs)
	}
	a.stop()
	c.start()
	waitSaved(t, ctx, c.n, sent.ID)
	if got := fileSum(t, ctx, c.n, sent.ID); got != want {
		t.Fatal("c's file differs from the one sent")
	}
	// Members' downloads (and their acknowledgements) leave the blobs for
	// the others.
	if now, err := relay.Blobs().Totals(ctx); err != nil || now != held {
		t.Errorf("the relay holds %+v after the downloads (%v), want %+v", now, err, held)
	}

	// d, removed before, got nothing.
	if fs, err := d.n.Files().List(ctx, 0); err != nil || len(fs) != 0 {
		t.Errorf("the removed member's files: %+v, %v", fs, err)
	}
	if ms, err := d.n.Groups().Messages(ctx, info.ID, 0); err != nil || slices.ContainsFunc(ms, func(m groups.Message) bool { return m.ID == sent.ID }) {
		t.Errorf("the removed member's messages: %+v, %v", ms, err)
	}
}
