package grouprelay_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/node/grouprelay"
	"github.com/sealpost/sealpost/protocol"
)

// queuedEntries fills a new log of r with n entries of about 512 KiB
// (each body starts with its index) and returns the log.
func queuedEntries(t *testing.T, r *relay, n int) protocol.GroupLogID {
	t.Helper()
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 512<<10)
	for i := range n {
		mustAppend(t, c, log, 0, fmt.Sprintf("%03d %s", i, big))
	}
	return log
}

// fetchFrame writes a FETCH of log's epoch 0 after after on str.
func fetchFrame(t *testing.T, str network.Stream, id uint64, log protocol.GroupLogID, after uint64, limit uint32) {
	t.Helper()
	req := &protocol.GroupLogRequest{ID: id, Op: protocol.GroupLogFetch, Log: log, Token: tok(0), After: after, Limit: limit}
	if err := protocol.WriteFrame(str, req); err != nil {
		t.Fatal(err)
	}
}

// TestQueuedBytes: clients that FETCH large entries and never read make
// the relay queue at most its queued bytes: a stream's bound, then the
// relay's, hold the FETCHes back; once the streams end the bytes queued go
// back to zero. Before the bound, a stream queued every entry of a FETCH
// (up to 256 of 2 MiB) for a client that did not read.
func TestQueuedBytes(t *testing.T) {
	res := testResources()
	res.MaxQueuedBytes = 2 * protocol.MaxGroupLogFrame
	res.MaxQueuedBytesTotal = 3 * protocol.MaxGroupLogFrame
	reg := prometheus.NewRegistry()
	r := newRelayHook(t, res, nil, func(cfg *grouprelay.Config) { cfg.Registerer = reg })
	const entries = 48 // 24 MiB, 6 times a stream's bound
	log := queuedEntries(t, r, entries)

	queued := func() float64 { return metric(t, reg, "sealpost_relay_group_queued_bytes") }
	waits := func(bound string) float64 {
		return metric(t, reg, "sealpost_relay_group_queued_waits_total", "bound", bound)
	}
	fetched := func() float64 { return metric(t, reg, "sealpost_relay_group_fetched_total") }
	var peak float64
	watch := func(done func() bool) func() bool {
		return func() bool {
			peak = max(peak, queued())
			return done()
		}
	}

	// One client: a FETCH of every entry, and a second FETCH behind it.
	// The relay pushes the first until the stream's bound, answers it
	// with more, and the second waits for room (or, without a bound, the
	// relay queues every entry).
	var strs []network.Stream
	hog := func() {
		str := r.rawStream()
		t.Cleanup(func() { str.Reset() })
		strs = append(strs, str)
		fetchFrame(t, str, 1, log, 0, 0)
		fetchFrame(t, str, 2, log, 0, 0)
	}
	hog()
	waitFor(watch(func() bool { return waits("stream") >= 1 || fetched() >= entries }))
	if peak > float64(res.MaxQueuedBytes) {
		t.Errorf("one stream that does not read: %v bytes queued, bound %d", peak, res.MaxQueuedBytes)
	}
	if q := queued(); q < float64(res.MaxQueuedBytes)/2 {
		t.Errorf("one stream that does not read: %v bytes queued, want its bound %d nearly full", q, res.MaxQueuedBytes)
	}

	// Two more: the relay's bound holds them back.
	hog()
	hog()
	waitFor(watch(func() bool { return waits("relay") >= 1 || fetched() >= 3*entries }))
	if peak > float64(res.MaxQueuedBytesTotal) {
		t.Errorf("three streams that do not read: %v bytes queued, bound %d", peak, res.MaxQueuedBytesTotal)
	}
	if waits("relay") < 1 {
		t.Error("no fetch waited for the relay's bound")
	}

	for _, str := range strs {
		str.Reset()
	}
	if !waitFor(func() bool { return queued() == 0 }) {
		t.Errorf("%v bytes queued after the streams ended", queued())
	}
}

// TestQueuedSlowReader: a client that reads its FETCH's answer only once
// the relay's queue for it is full gets the answer cut at an entry with
// more, and, fetching after the last entry it got while reading slowly,
// gets every entry once, in order. Before the bound, the first answer
// held every entry and no more.
func TestQueuedSlowReader(t *testing.T) {
	res := testResources()
	res.MaxQueuedBytes = 2 * protocol.MaxGroupLogFrame
	reg := prometheus.NewRegistry()
	r := newRelayHook(t, res, nil, func(cfg *grouprelay.Config) { cfg.Registerer = reg })
	const entries = 24 // 12 MiB, 3 times the stream's bound
	log := queuedEntries(t, r, entries)

	str := r.rawStream()
	t.Cleanup(func() { str.Reset() })
	fetchFrame(t, str, 1, log, 0, 0)
	fetchFrame(t, str, 2, log, 0, 1)
	// The first FETCH is done with, and the second waits for room (or,
	// without a bound, every entry was queued).
	waitFor(func() bool {
		return metric(t, reg, "sealpost_relay_group_queued_waits_total", "bound", "stream") >= 1 ||
			metric(t, reg, "sealpost_relay_group_fetched_total") >= entries
	})

	fr := protocol.NewFrameReader(str, protocol.MaxGroupLogFrame)
	// read reads the answer to request id slowly, frame by frame, and
	// returns the sequence numbers and bodies of its pushes.
	read := func(id uint64) (*protocol.GroupLogResponse, []uint64, []string) {
		t.Helper()
		var seqs []uint64
		var bodies []string
		for range math.MaxUint16 {
			str.SetReadDeadline(time.Now().Add(time.Minute))
			var resp protocol.GroupLogResponse
			if err := fr.Read(&resp); err != nil {
				t.Fatalf("read the answer to %d: %v", id, err)
			}
			if resp.ID != id || resp.Code != protocol.CodeOK {
				t.Fatalf("answer %+v, want one to %d", resp.ID, id)
			}
			if resp.Op != protocol.GroupLogPush {
				return &resp, seqs, bodies
			}
			var m protocol.GroupMessage
			if err := m.Unmarshal(resp.Entry); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, resp.Seq)
			bodies = append(bodies, string(m.Body[:3]))
			time.Sleep(time.Millisecond)
		}
		t.Fatal("no end to the answer")
		return nil, nil, nil
	}

	resp, seqs, got := read(1)
	if !resp.More || len(seqs) >= entries || len(seqs) == 0 {
		t.Errorf("the first FETCH: %d entries of %d, more %v; want it cut at the stream's bound, with more", len(seqs), entries, resp.More)
	}
	if len(seqs) > 0 && resp.Seq != seqs[len(seqs)-1] {
		t.Errorf("the first FETCH's answer names %d, its last push %d", resp.Seq, seqs[len(seqs)-1])
	}
	if _, probe, _ := read(2); len(probe) != 1 {
		t.Errorf("the second FETCH, of one entry: %d", len(probe))
	}
	fetches := 1
	for id := uint64(3); resp.More && id < 3+entries; id++ {
		fetches++
		fetchFrame(t, str, id, log, resp.Seq, 0)
		var more []string
		resp, _, more = read(id)
		got = append(got, more...)
	}
	if resp.More {
		t.Fatalf("still more after %d fetches", fetches)
	}
	if len(got) != entries {
		t.Fatalf("got %d entries in %d fetches, want %d", len(got), fetches, entries)
	}
	for i, b := range got {
		if want := fmt.Sprintf("%03d", i); b != want {
			t.Errorf("entry %d is %q, want %q", i, b, want)
		}
	}
	if !waitFor(func() bool { return metric(t, reg, "sealpost_relay_group_queued_bytes") == 0 }) {
		t.Error("bytes queued after every answer was read")
	}
}

// TestPushCost: a FETCH's push counts its entry and 64 bytes in the
// queued bytes (Resources.MaxQueuedBytes); its frame is no larger, whatever
// its fields hold.
func TestPushCost(t *testing.T) {
	for _, size := range []int{1, 127, 128, 16 << 10, protocol.MaxGroupEntry - 32} {
		e := entry(t, math.MaxUint64, protocol.GroupCommit, strings.Repeat("c", size))
		n := len(e)
		r := &protocol.GroupLogResponse{ID: math.MaxUint64, Op: protocol.GroupLogPush, Code: protocol.CodeOK,
			Seq: math.MaxUint64, Commit: true, Entry: e}
		b, err := protocol.AppendFrame(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > n+64 {
			t.Errorf("a push of %d bytes of entry: a frame of %d, counted %d", n, len(b), n+64)
		}
	}
}

// TestFetchBytes: a FETCH's answer carries at most protocol.MaxFetchBytes
// of entries, whatever its limit and however fast its client reads: it
// ends with more before the entry that would pass it, and the client
// gets the rest by fetching again. Before the bound, the answer held all
// 12 entries (18 MiB).
func TestFetchBytes(t *testing.T) {
	res := testResources()
	// The queued bytes out of the way: only MaxFetchBytes cuts.
	res.MaxQueuedBytes = 64 * protocol.MaxGroupLogFrame
	res.MaxQueuedBytesTotal = res.MaxQueuedBytes
	r := newRelay(t, res)
	c := r.dial()
	log, err := create(c, 0, tok(0))
	if err != nil {
		t.Fatal(err)
	}
	const entries = 12
	big := strings.Repeat("x", 3<<19)
	var size int
	for i := range entries {
		e := entry(t, 0, protocol.GroupApplication, fmt.Sprintf("%03d %s", i, big))
		size = len(e)
		if _, err := c.Append(ctx, log, 0, tok(0), e, false, protocol.TokenHash{}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := c.Fetch(ctx, log, 0, tok(0), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := protocol.MaxFetchBytes / size; len(f.Entries) != want || !f.More {
		t.Fatalf("a FETCH of %d entries of %d bytes: %d entries, more %v; want %d (%d bytes) and more", entries, size, len(f.Entries), f.More, want, protocol.MaxFetchBytes)
	}
	got := bodies(t, f.Entries)
	f, err = c.Fetch(ctx, log, 0, tok(0), f.Entries[len(f.Entries)-1].Seq, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.More {
		t.Error("more after the rest")
	}
	got = append(got, bodies(t, f.Entries)...)
	if len(got) != entries {
		t.Fatalf("%d entries in two fetches, want %d", len(got), entries)
	}
	for i, b := range got {
		if want := fmt.Sprintf("%03d", i); b[:3] != want {
			t.Errorf("entry %d is %q..., want %q", i, b[:3], want)
		}
	}
}
