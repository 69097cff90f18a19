// Package deadline moves a stream's deadline before each read or write, so
// that a peer that stalls in the middle of a long transfer (a blob of
// several MiB) is cut off after a fixed quiet time, however long the
// transfer.
package deadline

import (
	"io"
	"time"
)

// Stream is the part of a libp2p stream this package sets deadlines on.
type Stream interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Reader reads from R, with S's read deadline D after the start of each
// read.
type Reader struct {
	R io.Reader
	S Stream
	D time.Duration
}

func (r *Reader) Read(p []byte) (int, error) {
	r.S.SetReadDeadline(time.Now().Add(r.D))
	return r.R.Read(p)
}

// Writer writes to W, with S's write deadline D after the start of each
// write.
type Writer struct {
	W io.Writer
	S Stream
	D time.Duration
}

func (w *Writer) Write(p []byte) (int, error) {
	w.S.SetWriteDeadline(time.Now().Add(w.D))
	return w.W.Write(p)
}
