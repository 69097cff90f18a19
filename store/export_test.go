package store

import (
	"time"

	"github.com/sealpost/sealpost/protocol"
)

func timeSeconds(s int64) time.Duration { return time.Duration(s) * time.Second }

// WriteSchema1 exports the schema-1 code path to the external tests.
var WriteSchema1 = writeSchema1

// ForgetLastWork deletes the row of the last N AddWork gave group g's
// kind, as in a store written before the row.
func ForgetLastWork(tx *Tx, g protocol.GroupID, kind GroupWorkKind) error {
	return tx.del(groupWorkLastKey(g, kind))
}
