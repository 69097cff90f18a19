package mailbox

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sealpost/sealpost/crypto/identity"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Create makes a new mailbox on the relay at addr (a multiaddr with
// /p2p/): a new client key for the relay, a random owner key and sealing
// key, none linked to the node's identity or device. It returns the
// mailbox for the caller to commit (store.Mailboxes), and Refresh then
// makes Run subscribe to it. A relay the node already has a mailbox on is
// not special: the caller refuses that.
func (c *Client) Create(ctx context.Context, addr string) (store.Mailbox, error) {
	id, maddr, err := ParseAddr(addr)
	if err != nil {
		return store.Mailbox{}, err
	}
	if _, ok := protocol.Ed25519FromPeerID([]byte(id)); !ok {
		return store.Mailbox{}, fmt.Errorf("%w %q: the relay's key is not Ed25519, so its receipts cannot be checked", ErrBadAddr, addr)
	}
	key, err := newKey(c.cfg.Rand)
	if err != nil {
		return store.Mailbox{}, err
	}
	clientKey, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox: client key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(c.cfg.Rand, seed); err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox: owner key: %w", err)
	}
	owner := ed25519.NewKeyFromSeed(seed)
	sealSeed := make([]byte, 32)
	if _, err := io.ReadFull(c.cfg.Rand, sealSeed); err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox: sealing key: %w", err)
	}
	sealing, err := ecdh.X25519().NewPrivateKey(sealSeed)
	if err != nil {
		return store.Mailbox{}, fmt.Errorf("mailbox: sealing key: %w", err)
	}
	// The new key replaces whatever key the client used towards the relay.
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return store.Mailbox{}, ErrClosed
	}
	old := c.relays[connKey{id: id, role: roleOwner}]
	delete(c.relays, connKey{id: id, role: roleOwner})
	c.keys[id] = key
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	r, err := c.ownerRelay(id, []ma.Multiaddr{maddr})
	if err != nil {
		return store.Mailbox{}, err
	}
	req := &protocol.RelayRequest{Op: protocol.RelayCreate}
	copy(req.OwnerKey[:], owner.Public().(ed25519.PublicKey))
	copy(req.SealingKey[:], sealing.PublicKey().Bytes())
	resp, err := r.call(ctx, req, owner, nil)
	if err != nil {
		return store.Mailbox{}, err
	}
	return store.Mailbox{
		ID: resp.Mailbox, Relay: id.String(), Addrs: []string{maddr.String()},
		AuthKey: owner, SealingKey: sealSeed, ClientKey: clientKey, CreatedAt: c.clock.Now(),
	}, nil
}

// owned returns the relay connection and owner key of an own mailbox.
func (c *Client) owned(m *store.Mailbox) (*relayConn, ed25519.PrivateKey, error) {
	id, err := c.learn(m)
	if err != nil {
		return nil, nil, err
	}
	if len(m.AuthKey) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("mailbox: stored owner key of %d bytes", len(m.AuthKey))
	}
	var addrs []ma.Multiaddr
	for _, s := range m.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	r, err := c.ownerRelay(id, addrs)
	if err != nil {
		return nil, nil, err
	}
	return r, ed25519.PrivateKey(m.AuthKey), nil
}

// ownerCall sends one owner request about mailbox m.
func (c *Client) ownerCall(ctx context.Context, m *store.Mailbox, req *protocol.RelayRequest) (*protocol.RelayResponse, error) {
	r, key, err := c.owned(m)
	if err != nil {
		return nil, err
	}
	req.Mailbox = m.ID
	return r.call(ctx, req, key, nil)
}

// Delete deletes mailbox m and everything it holds on its relay. A relay
// that no longer knows it is not an error. The client keeps using m's
// client key towards the relay until Forget.
func (c *Client) Delete(ctx context.Context, m *store.Mailbox) error {
	_, err := c.ownerCall(ctx, m, &protocol.RelayRequest{Op: protocol.RelayDeleteMailbox})
	if errors.Is(err, protocol.ErrUnknownMailbox) {
		return nil
	}
	return err
}

// Forget drops the client key of the relay of a deleted mailbox and
// closes the client's host for it; Refresh stops its subscription.
func (c *Client) Forget(m *store.Mailbox) {
	id, err := peer.Decode(m.Relay)
	if err != nil {
		return
	}
	c.mu.Lock()
	r := c.relays[connKey{id: id, role: roleOwner}]
	delete(c.relays, connKey{id: id, role: roleOwner})
	delete(c.keys, id)
	c.mu.Unlock()
	if r != nil {
		r.close()
	}
	c.Refresh()
}

// Quota is what a deposit token may hold on the relay at once; zero
// fields ask for the relay's per-token limit.
type Quota struct {
	Count, Bytes uint64
}

// Register registers the hashes of tokens on m's relay, each with quota q
// (registering a registered token again sets its quota).
func (c *Client) Register(ctx context.Context, m *store.Mailbox, q Quota, tokens ...[]byte) error {
	for _, t := range tokens {
		req := &protocol.RelayRequest{Op: protocol.RelayRegisterToken, TokenHash: protocol.HashToken(t),
			Count: q.Count, Bytes: q.Bytes}
		if _, err := c.ownerCall(ctx, m, req); err != nil {
			return err
		}
	}
	return nil
}

// Revoke removes tokens (and the card blobs under them) from m's relay; a
// token the relay does not hold is not an error.
func (c *Client) Revoke(ctx context.Context, m *store.Mailbox, tokens ...[]byte) error {
	for _, t := range tokens {
		req := &protocol.RelayRequest{Op: protocol.RelayRevokeToken, TokenHash: protocol.HashToken(t)}
		if _, err := c.ownerCall(ctx, m, req); err != nil && !errors.Is(err, protocol.ErrNotFound) {
			return err
		}
	}
	return nil
}

// PutCard stores blob (SealCard's) as the card blob of token on m's relay.
func (c *Client) PutCard(ctx context.Context, m *store.Mailbox, token, blob []byte) error {
	_, err := c.ownerCall(ctx, m, &protocol.RelayRequest{Op: protocol.RelayPutCard,
		TokenHash: protocol.HashToken(token), Blob: blob})
	return err
}

// depositor returns the depositor's connection to the relay of b for b, a
// mailbox of someone else's as a card or invite names it; the caller
// releases it.
func (c *Client) depositor(ctx context.Context, b *protocol.Mailbox) (*relayConn, error) {
	id, err := peer.IDFromBytes(b.Relay)
	if err != nil {
		return nil, fmt.Errorf("%w: relay peer ID: %v", ErrBadAddr, err)
	}
	var addrs []ma.Multiaddr
	for _, raw := range b.RelayAddrs {
		if a, err := ma.NewMultiaddrBytes(raw); err == nil {
			addrs = append(addrs, a)
		}
	}
	return c.relay(ctx, id, b.ID, addrs)
}

// GetCard fetches the card blob stored under b's token.
func (c *Client) GetCard(ctx context.Context, b *protocol.Mailbox) ([]byte, error) {
	r, err := c.depositor(ctx, b)
	if err != nil {
		return nil, err
	}
	defer r.release()
	resp, err := r.call(ctx, &protocol.RelayRequest{Op: protocol.RelayGetCard, Mailbox: b.ID, Token: b.Token}, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Blob, nil
}

// Receipt is a verified custody receipt: the relay holds the envelope
// until StoredUntil.
type Receipt struct {
	Relay peer.ID
	// StoredUntil is the end of custody the relay signed, cut to
	// protocol.MaxCustody from the deposit (protocol.Receipt.CheckCustody;
	// a receipt further ahead is refused as ErrBadRelay).
	StoredUntil time.Time
	// Signature is the relay's signature over the receipt (see
	// protocol.Receipt), kept as evidence.
	Signature []byte
}

// Result is the outcome of one deposit: a receipt, or the error (a
// refusal wraps the code's sentinel: protocol.ErrTokenRefused,
// protocol.ErrTokenQuota, ...).
type Result struct {
	Receipt Receipt
	Err     error
}

// depositWindow bounds the deposits written before their receipts are
// read (the relay commits them in groups).
const depositWindow = 256

// Deposit seals each payload to b's mailbox (crypto/seal, from sender
// and its device: claims only the recipient's session confirms), deposits
// the envelopes on b's relay, pipelined on one stream, and returns one
// result per payload, in order. A receipt is returned only once its
// signature verified against the relay's key. The error is for the
// stream: results before the failure are kept, the others carry the
// error.
func (c *Client) Deposit(ctx context.Context, b *protocol.Mailbox, sender *identity.Public, device []byte, payloads [][]byte) ([]Result, error) {
	out := make([]Result, len(payloads))
	fail := func(err error) ([]Result, error) {
		for i := range out {
			out[i].Err = err
		}
		return out, err
	}
	envelopes, err := c.seal(b, sender, device, payloads)
	if err != nil {
		return fail(err)
	}
	r, err := c.depositor(ctx, b)
	if err != nil {
		return fail(err)
	}
	defer r.release()
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	done := 0
	err = r.dep.with(ctx, r, func(rs *relayStream) error {
		for done < len(envelopes) {
			n := min(len(envelopes)-done, depositWindow)
			if err := rs.deposit(r, b, envelopes[done:done+n], out[done:done+n]); err != nil {
				return err
			}
			done += n
		}
		return nil
	})
	r.touch()
	if err != nil {
		for i := done; i < len(out); i++ {
			if out[i].Err == nil && out[i].Receipt.Signature == nil {
				out[i].Err = err
			}
		}
	}
	return out, err
}

// deposit writes one window of deposits and reads their answers.
func (rs *relayStream) deposit(r *relayConn, b *protocol.Mailbox, envs [][]byte, out []Result) error {
	first := rs.nextID + 1
	rs.buf = rs.buf[:0]
	for _, env := range envs {
		req := &protocol.RelayRequest{Op: protocol.RelayDeposit, Mailbox: b.ID, Token: b.Token, Envelope: env}
		if err := rs.prepare(nil, req, nil); err != nil {
			return err
		}
		var err error
		if rs.buf, err = protocol.AppendFrame(rs.buf, req); err != nil {
			return fmt.Errorf("mailbox: deposit: %w", err)
		}
		if len(rs.buf) >= 1<<20 {
			if _, err := rs.s.Write(rs.buf); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
			}
			rs.buf = rs.buf[:0]
		}
	}
	if len(rs.buf) > 0 {
		if _, err := rs.s.Write(rs.buf); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrUnreachable, r.id, err)
		}
	}
	answered := make([]bool, len(envs))
	far := 0 // receipts beyond protocol.MaxCustody
	for range envs {
		var resp protocol.RelayResponse
		if err := rs.fr.Read(&resp); err != nil {
			return rs.readErr(r, err)
		}
		if resp.Op == 0 {
			return fmt.Errorf("%w: %s: the relay refused the stream: %s", ErrBadRelay, r.id, resp.Code)
		}
		i := int(resp.ID - first)
		if resp.Op != protocol.RelayDeposit || resp.ID < first || i >= len(envs) || answered[i] {
			return fmt.Errorf("%w: %s: unexpected %s answer %d", ErrBadRelay, r.id, resp.Op, resp.ID)
		}
		answered[i] = true
		if resp.Code != protocol.CodeOK {
			out[i].Err = &refusal{op: protocol.RelayDeposit, code: resp.Code}
			continue
		}
		rc := protocol.Receipt{Relay: []byte(r.id), Mailbox: b.ID, Envelope: protocol.EnvelopeHash(envs[i]),
			StoredUntil: resp.StoredUntil, Signature: resp.Signature}
		if err := rc.Verify(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadRelay, r.id, err)
		}
		until, err := rc.CheckCustody(r.c.clock.Now())
		if err != nil {
			// A relay that would have the sender wait past any custody it
			// may give: its receipt counts as none (the message goes to
			// the other relays, and to this one again after a backoff).
			out[i].Err = fmt.Errorf("%w: %s: %w", ErrBadRelay, r.id, err)
			far++
			continue
		}
		out[i].Receipt = Receipt{Relay: r.id, StoredUntil: until, Signature: resp.Signature}
	}
	if far > 0 {
		r.c.badReceipts.Add(uint64(far))
		r.c.log.Warn("mailbox: a relay promised custody beyond the longest a relay may give; its receipts do not count",
			"relay", r.id, "receipts", far)
	}
	return nil
}

// PutPrekeys stores blobs (SealPrekey's) on m's relay as one batch that
// the relay hands out until expires (it may grant less), and returns how
// many prekeys the relay then holds for m.
func (c *Client) PutPrekeys(ctx context.Context, m *store.Mailbox, blobs [][]byte, expires time.Time) (uint64, error) {
	resp, err := c.ownerCall(ctx, m, &protocol.RelayRequest{Op: protocol.RelayPutPrekeys, Blobs: blobs,
		ExpiresAt: expires.UnixMilli()})
	if err != nil {
		return 0, err
	}
	c.setStatus(m, func(s *Status) { s.Prekeys = resp.Prekeys })
	return resp.Prekeys, nil
}

// TakePrekey takes one prekey blob from b's mailbox with b's token; the
// relay hands each blob to one requester only.
func (c *Client) TakePrekey(ctx context.Context, b *protocol.Mailbox) ([]byte, error) {
	r, err := c.depositor(ctx, b)
	if err != nil {
		return nil, err
	}
	defer r.release()
	resp, err := r.call(ctx, &protocol.RelayRequest{Op: protocol.RelayTakePrekey, Mailbox: b.ID, Token: b.Token}, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Blob, nil
}
