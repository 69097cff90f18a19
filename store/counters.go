package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxCounterName bounds a counter's name.
const MaxCounterName = 64

// Counters hands out increasing numbers by name (IDs of prekeys, stream
// counters that must survive restarts, ...). Names starting with "store."
// are the store's own.
type Counters struct{ tx *Tx }

// Counters returns the counters.
func (tx *Tx) Counters() Counters { return Counters{tx} }

func counterKey(name string) []byte { return key(tCounter, []byte(name)) }

// Next increments counter name and returns its new value; the first call
// returns 1. Concurrent Updates that use the same counter conflict (and
// are retried by the backend), so each value is handed out once.
func (s Counters) Next(name string) (uint64, error) {
	v, err := s.Get(name)
	if err != nil {
		return 0, err
	}
	v++
	if v == 0 {
		return 0, fmt.Errorf("counter %q: %w: overflow", name, ErrInvalid)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if err := s.tx.set(counterKey(name), b[:]); err != nil {
		return 0, err
	}
	return v, nil
}

// Get returns the current value of counter name (0 if never used).
func (s Counters) Get(name string) (uint64, error) {
	if name == "" || len(name) > MaxCounterName {
		return 0, fmt.Errorf("counter %q: %w: bad name", name, ErrInvalid)
	}
	b, err := s.tx.get(counterKey(name))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("counter %q: %w", name, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}
