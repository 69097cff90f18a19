package store

import "time"

func timeSeconds(s int64) time.Duration { return time.Duration(s) * time.Second }

// WriteSchema1 exports the schema-1 code path to the external tests.
var WriteSchema1 = writeSchema1
