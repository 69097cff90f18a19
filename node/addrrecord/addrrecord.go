// Package addrrecord is the address record a device publishes in the DHT
// so that it can be found even when it runs the DHT in client mode: the
// device's current multiaddrs (relay circuit addresses included), a
// sequence number and an expiry time, signed by the device's libp2p key.
//
// A record travels as a libp2p signed envelope (domain Domain, payload
// type PayloadType) under the DHT key Key(peer), in the DHT namespace
// Namespace, whose Validator the DHT must be given. The payload is
//
//	version (1 byte, 1) || seq (8 bytes, big-endian) ||
//	expires (8 bytes, big-endian Unix seconds) || count (1 byte) ||
//	count × (length (2 bytes, big-endian) || multiaddr bytes)
//
// with nothing after it. A record is refused if it is larger than MaxSize,
// if its signer is not the peer its key names, if it expired more than
// ClockTolerance ago, or if it claims to expire more than MaxTTL (plus the
// tolerance) from now. Among valid records for one key the highest
// sequence number wins.
package addrrecord

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Names and limits of the record.
const (
	// Namespace is the DHT namespace of address records.
	Namespace = "sealpost-addr"
	// Domain is the signature domain of the envelope.
	Domain = "sealpost-addr-record"
	// PayloadType is the envelope's payload type.
	PayloadType = "/sealpost/addr-record/1"
	// MaxSize bounds an encoded record (the whole envelope).
	MaxSize = 4096
	// MaxAddrs bounds the addresses in one record.
	MaxAddrs = 32
	// MaxAddrLen bounds one encoded multiaddr.
	MaxAddrLen = 256
	// MaxTTL bounds how far in the future a record may expire.
	MaxTTL = 24 * time.Hour
	// ClockTolerance is how far the signer's clock may be off: a record is
	// accepted until ClockTolerance after its expiry.
	ClockTolerance = 5 * time.Minute

	version    = 1
	headerSize = 1 + 8 + 8 + 1
)

// Errors. Every refusal wraps one of them.
var (
	// ErrInvalid: the record is malformed, oversized, badly signed or
	// signed by another key than the one its DHT key names.
	ErrInvalid = errors.New("addrrecord: invalid record")
	// ErrExpired: the record's expiry (plus ClockTolerance) has passed.
	ErrExpired = errors.New("addrrecord: record expired")
)

// Record is what a device says about where it can be reached.
type Record struct {
	// Addrs are the device's multiaddrs, without /p2p/ (at most MaxAddrs).
	Addrs []ma.Multiaddr
	// Seq orders records of one device: a higher one replaces a lower one.
	Seq uint64
	// Expires is when the record stops being valid (second precision).
	Expires time.Time
}

// Key returns the DHT key of p's address record.
func Key(p peer.ID) string { return "/" + Namespace + "/" + string(p) }

// ParseKey returns the peer that a DHT key names.
func ParseKey(key string) (peer.ID, error) {
	rest, ok := strings.CutPrefix(key, "/"+Namespace+"/")
	if !ok {
		return "", fmt.Errorf("%w: key not in namespace %s", ErrInvalid, Namespace)
	}
	p, err := peer.IDFromBytes([]byte(rest))
	if err != nil {
		return "", fmt.Errorf("%w: key: %v", ErrInvalid, err)
	}
	return p, nil
}

// Seal signs r with key and returns the encoded record.
func Seal(key crypto.PrivKey, r Record) ([]byte, error) {
	pl := payload{r}
	if _, err := pl.MarshalRecord(); err != nil {
		return nil, err
	}
	env, err := record.Seal(&pl, key)
	if err != nil {
		return nil, fmt.Errorf("addrrecord: sign: %w", err)
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("addrrecord: encode: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalid, len(b), MaxSize)
	}
	return b, nil
}

// Open checks data as the record stored under the DHT key of p at time now
// and returns it.
func Open(p peer.ID, data []byte, now time.Time) (Record, error) {
	if len(data) > MaxSize {
		return Record{}, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalid, len(data), MaxSize)
	}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !bytes.Equal(env.PayloadType, []byte(PayloadType)) {
		return Record{}, fmt.Errorf("%w: payload type %q", ErrInvalid, env.PayloadType)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil || signer != p {
		return Record{}, fmt.Errorf("%w: not signed by %s", ErrInvalid, p)
	}
	var pl payload
	if _, err := record.ConsumeTypedEnvelope(data, &pl); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r := pl.Record
	if now.After(r.Expires.Add(ClockTolerance)) {
		return Record{}, fmt.Errorf("%w: at %s", ErrExpired, r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Expires.After(now.Add(MaxTTL + ClockTolerance)) {
		return Record{}, fmt.Errorf("%w: expires %s, more than %s ahead", ErrInvalid, r.Expires.UTC().Format(time.RFC3339), MaxTTL)
	}
	return r, nil
}

// Validator is the DHT's validator for Namespace (a
// github.com/libp2p/go-libp2p-record Validator).
type Validator struct {
	// Now is the current time; nil: time.Now.
	Now func() time.Time
}

func (v Validator) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// Validate checks value as the record under key.
func (v Validator) Validate(key string, value []byte) error {
	p, err := ParseKey(key)
	if err != nil {
		return err
	}
	_, err = Open(p, value, v.now())
	return err
}

// Select returns the index of the valid record with the highest sequence
// number (the first of equals).
func (v Validator) Select(key string, values [][]byte) (int, error) {
	p, err := ParseKey(key)
	if err != nil {
		return 0, err
	}
	now := v.now()
	best, bestSeq := -1, uint64(0)
	for i, val := range values {
		r, err := Open(p, val, now)
		if err != nil {
			continue
		}
		if best < 0 || r.Seq > bestSeq {
			best, bestSeq = i, r.Seq
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", ErrInvalid, len(values))
	}
	return best, nil
}

// payload is Record as a libp2p record.Record.
type payload struct{ Record }

func (*payload) Domain() string { return Domain }
func (*payload) Codec() []byte  { return []byte(PayloadType) }

func (pl *payload) MarshalRecord() ([]byte, error) {
	r := pl.Record
	if len(r.Addrs) > MaxAddrs {
		return nil, fmt.Errorf("%w: %d addresses, limit %d", ErrInvalid, len(r.Addrs), MaxAddrs)
	}
	if r.Expires.Unix() <= 0 {
		return nil, fmt.Errorf("%w: expiry before 1970", ErrInvalid)
	}
	b := make([]byte, headerSize, MaxSize)
	b[0] = version
	binary.BigEndian.PutUint64(b[1:], r.Seq)
	binary.BigEndian.PutUint64(b[9:], uint64(r.Expires.Unix()))
	b[17] = byte(len(r.Addrs))
	for _, a := range r.Addrs {
		ab := a.Bytes()
		if len(ab) == 0 || len(ab) > MaxAddrLen {
			return nil, fmt.Errorf("%w: address of %d bytes", ErrInvalid, len(ab))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(ab)))
		b = append(b, ab...)
	}
	return b, nil
}

func (pl *payload) UnmarshalRecord(b []byte) error {
	if len(b) < headerSize || b[0] != version {
		return fmt.Errorf("%w: bad header", ErrInvalid)
	}
	exp := binary.BigEndian.Uint64(b[9:])
	if exp == 0 || exp > 1<<62 {
		return fmt.Errorf("%w: expiry out of range", ErrInvalid)
	}
	n := int(b[17])
	if n > MaxAddrs {
		return fmt.Errorf("%w: %d addresses, limit %d", ErrInvalid, n, MaxAddrs)
	}
	r := Record{
		Seq:     binary.BigEndian.Uint64(b[1:]),
		Expires: time.Unix(int64(exp), 0),
		Addrs:   make([]ma.Multiaddr, 0, n),
	}
	rest := b[headerSize:]
	for range n {
		if len(rest) < 2 {
			return fmt.Errorf("%w: truncated", ErrInvalid)
		}
		l := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if l == 0 || l > MaxAddrLen || l > len(rest) {
			return fmt.Errorf("%w: address length %d", ErrInvalid, l)
		}
		a, err := ma.NewMultiaddrBytes(rest[:l])
		if err != nil {
			return fmt.Errorf("%w: address: %v", ErrInvalid, err)
		}
		r.Addrs = append(r.Addrs, a)
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(rest))
	}
	pl.Record = r
	return nil
}

// Select returns at most n of the addresses in all that others can use,
// best first: public addresses, then relay circuit addresses (which reach
// a node behind a NAT), then private ones (a LAN: 10/8, 192.168/16 and
// the like, and whatever go-multiaddr counts neither public nor private)
// only when lan is set or nothing public and no circuit remains, and
// loopback ones only when nothing else does (a network on one machine).
// A record or link that travels beyond the node's contacts takes lan
// false: a private address says nothing useful to the internet and tells
// it about the node's home network.
func Select(all []ma.Multiaddr, n int, lan bool) []ma.Multiaddr {
	var public, circuit, private, loop []ma.Multiaddr
	for _, a := range all {
		switch {
		case isCircuit(a):
			circuit = append(circuit, a)
		case manet.IsIPLoopback(a):
			loop = append(loop, a)
		case manet.IsPublicAddr(a):
			public = append(public, a)
		default:
			private = append(private, a)
		}
	}
	out := append(public, circuit...)
	if lan || len(out) == 0 {
		out = append(out, private...)
	}
	if len(out) == 0 {
		out = loop
	}
	return out[:min(n, len(out))]
}

func isCircuit(a ma.Multiaddr) bool {
	for _, c := range a {
		if c.Protocol().Code == ma.P_CIRCUIT {
			return true
		}
	}
	return false
}
