package ratchet

import (
	"encoding/binary"
	"slices"

	"github.com/sealpost/sealpost/crypto/internal/ecc"
)

// stateFormat is the first byte of a marshalled State.
const stateFormat = 1

// Sizes of the marshalled state (docs/PROTOCOL.md §6.6).
const (
	stateFixedSize   = 4 + 3*4 + 10*32 // format..flags, counters, keys
	oldChainSize     = 32 + 8
	skippedKeySize   = 32 + 4 + 32 + 8
	maxMarshalledLen = stateFixedSize + 2 + MaxADSize + 1 + MaxOldChains*oldChainSize + 2 + MaxSkippedKeys*skippedKeySize
)

// MarshalBinary encodes the state. Equal states give equal bytes. The
// encoding holds secret keys: store it encrypted.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, stateFixedSize+2+len(s.ad)+1+len(s.oldChains)*oldChainSize+2+len(s.skipped)*skippedKeySize))
}

// AppendBinary appends the encoding of MarshalBinary to b.
func (s *State) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateFormat, s.version, s.minVersion, s.flags)
	b = binary.BigEndian.AppendUint32(b, s.ns)
	b = binary.BigEndian.AppendUint32(b, s.nr)
	b = binary.BigEndian.AppendUint32(b, s.pn)
	for _, k := range s.keys() {
		b = append(b, k[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.ad)))
	b = append(b, s.ad...)
	b = append(b, byte(len(s.oldChains)))
	for _, c := range s.oldChains {
		b = append(b, c.hk[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.retired))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.skipped)))
	for _, k := range s.skipped {
		b = append(b, k.hk[:]...)
		b = binary.BigEndian.AppendUint32(b, k.n)
		b = append(b, k.mk[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(k.stored))
	}
	return b, nil
}

// keys lists the fixed key fields in their encoding order.
func (s *State) keys() [10]*[32]byte {
	return [10]*[32]byte{&s.dhsPriv, &s.dhsPub, &s.dhr, &s.rk, &s.cks, &s.hks, &s.ckr, &s.hkr, &s.nhks, &s.nhkr}
}

// UnmarshalBinary decodes a state encoded by MarshalBinary, replacing s. It
// checks every length before allocating and refuses anything that is not a
// canonical encoding of a consistent state (ErrInvalidState).
func (s *State) UnmarshalBinary(data []byte) error {
	t, err := parseState(data)
	if err != nil {
		return err
	}
	*s = *t
	return nil
}

// reader consumes a byte slice; any short read sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) next(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.next(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.next(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.next(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.next(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) key(k *[32]byte) {
	if v := r.next(32); v != nil {
		copy(k[:], v)
	}
}

func parseState(data []byte) (*State, error) {
	if len(data) < stateFixedSize || len(data) > maxMarshalledLen {
		return nil, ErrInvalidState
	}
	r := &reader{b: data}
	s := &State{}
	if r.u8() != stateFormat {
		return nil, ErrInvalidState
	}
	s.version = r.u8()
	s.minVersion = r.u8()
	s.flags = r.u8()
	s.ns = r.u32()
	s.nr = r.u32()
	s.pn = r.u32()
	for _, k := range s.keys() {
		r.key(k)
	}
	adLen := int(r.u16())
	if adLen > MaxADSize {
		return nil, ErrInvalidState
	}
	s.ad = slices.Clone(r.next(adLen))
	if s.ad == nil {
		s.ad = []byte{}
	}
	nOld := int(r.u8())
	if nOld > MaxOldChains || nOld*oldChainSize > len(r.b) {
		return nil, ErrInvalidState
	}
	if nOld > 0 {
		s.oldChains = make([]oldChain, nOld)
		for i := range s.oldChains {
			r.key(&s.oldChains[i].hk)
			s.oldChains[i].retired = int64(r.u64())
		}
	}
	nSkipped := int(r.u16())
	if nSkipped > MaxSkippedKeys || nSkipped*skippedKeySize > len(r.b) {
		return nil, ErrInvalidState
	}
	if nSkipped > 0 {
		s.skipped = make([]skippedKey, nSkipped)
		for i := range s.skipped {
			k := &s.skipped[i]
			r.key(&k.hk)
			k.n = r.u32()
			r.key(&k.mk)
			k.stored = int64(r.u64())
		}
	}
	if r.bad || len(r.b) != 0 {
		return nil, ErrInvalidState
	}
	if !s.consistent() {
		return nil, ErrInvalidState
	}
	return s, nil
}

// consistent checks the invariants NewInitiator, NewResponder, Encrypt and
// Decrypt maintain, so that a parsed state is one they could have produced
// and re-encodes to the same bytes.
func (s *State) consistent() bool {
	if checkVersion(s.version) != nil || s.minVersion < 1 || s.minVersion > s.version {
		return false
	}
	if s.flags&^flagsKnown != 0 {
		return false
	}
	var zero [32]byte
	hasRemote := s.flags&flagRemoteKey != 0
	sending := s.flags&flagSending != 0
	receiving := s.flags&flagReceiving != 0
	pending := s.flags&flagSendPending != 0
	// Absent fields are zero, so the encoding is canonical.
	if !hasRemote && s.dhr != zero || !sending && (s.cks != zero || s.hks != zero || s.ns != 0 || s.pn != 0) ||
		!receiving && (s.ckr != zero || s.hkr != zero || s.nr != 0) {
		return false
	}
	if hasRemote && ecc.CheckX25519Public(s.dhr[:]) != nil {
		return false
	}
	if (pending || sending || receiving) && !hasRemote {
		return false
	}
	if receiving && !pending && !sending {
		return false
	}
	if !receiving && len(s.oldChains) > 0 {
		return false
	}
	for i := range s.skipped {
		k := &s.skipped[i]
		known := receiving && k.hk == s.hkr
		for j := range s.oldChains {
			known = known || k.hk == s.oldChains[j].hk
		}
		if !known {
			return false
		}
	}
	return true
}
