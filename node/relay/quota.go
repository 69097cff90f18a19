package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/netip"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Creator quotas: a mailbox counts against a quota of the peer that
// created it and one of that peer's address range (Resources.PeerMax*,
// SubnetMax*). The store keeps each quota under a key the relay derives
// with a secret of its own (from its host key), so that the store names
// no peer ID or address.

// The quotas of a mailbox, in store.RelayMailbox.Quotas. Its attachment
// blobs count in them too, with limits of their own (node/blobrelay).
const (
	quotaPeer   = store.RelayQuotaPeer
	quotaSubnet = store.RelayQuotaSubnet
)

// quotaNames name the quotas in refusals and metrics: the mailbox count
// and the envelope bytes of each.
var quotaNames = [2][2]string{
	quotaPeer:   {"peer_mailboxes", "peer_bytes"},
	quotaSubnet: {"subnet_mailboxes", "subnet_bytes"},
}

// newQuotaSecret derives the key of the quota keys from the relay's host
// key seed.
func newQuotaSecret(seed []byte) []byte {
	h := sha256.New()
	h.Write([]byte("sealpost relay quota keys v1"))
	h.Write(seed)
	return h.Sum(nil)
}

// quotaKey is the store's name of one quota.
func (s *Server) quotaKey(kind byte, name []byte) store.RelayQuotaKey {
	m := hmac.New(sha256.New, s.quotaSecret)
	m.Write([]byte{kind})
	m.Write(name)
	var k store.RelayQuotaKey
	copy(k[:], m.Sum(nil))
	return k
}

// CreatorQuotas returns the keys of the creator quotas of peer p on a
// connection from remote, for the relay's other services whose data count
// in them (node/grouprelay: the group logs a peer creates).
func (s *Server) CreatorQuotas(p peer.ID, remote ma.Multiaddr) [2]store.RelayQuotaKey {
	return s.quotasOf(p, remote)
}

// quotasOf returns the quota keys of a peer on a connection from remote:
// the peer's, and its address range's (none for an address not in a
// range: a loopback one unless SubnetLoopback, or a transport without an
// IP address).
func (s *Server) quotasOf(p peer.ID, remote ma.Multiaddr) [2]store.RelayQuotaKey {
	var q [2]store.RelayQuotaKey
	q[quotaPeer] = s.quotaKey(quotaPeer, []byte(p))
	if prefix, ok := s.res.subnet(remote); ok {
		q[quotaSubnet] = s.quotaKey(quotaSubnet, []byte(prefix.String()))
	}
	return q
}

// subnet returns the address range of a remote address.
func (r Resources) subnet(remote ma.Multiaddr) (netip.Prefix, bool) {
	if remote == nil {
		return netip.Prefix{}, false
	}
	ip, err := manet.ToIP(remote)
	if err != nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	if addr.IsLoopback() && !r.SubnetLoopback {
		return netip.Prefix{}, false
	}
	bits := r.SubnetV6Bits
	if addr.Is4() {
		bits = r.SubnetV4Bits
	}
	prefix, err := addr.Prefix(bits)
	return prefix, err == nil
}

// quotaLimits returns the mailbox count and bytes of quota i.
func (r Resources) quotaLimits(i int) (mailboxes, bytes uint64) {
	if i == quotaPeer {
		return r.PeerMaxMailboxes, r.PeerMaxBytes
	}
	return r.SubnetMaxMailboxes, r.SubnetMaxBytes
}

// checkCreate refuses a new mailbox counting against quotas q when one of
// them holds its limit of mailboxes.
func (s *Server) checkCreate(r store.Relay, q [2]store.RelayQuotaKey) error {
	for i, k := range q {
		if k == (store.RelayQuotaKey{}) {
			continue
		}
		u, err := r.Quota(k)
		if err != nil {
			return err
		}
		if limit, _ := s.res.quotaLimits(i); u.Mailboxes >= limit {
			return quotaRefusal{refusal{fmt.Errorf("%w: %d mailboxes made by this %s", protocol.ErrTooManyMailboxes, u.Mailboxes, quotaWho(i))}, quotaNames[i][0]}
		}
	}
	return nil
}

// checkBytes refuses n more bytes into mailbox m when one of its quotas
// would go over its limit of bytes.
func (s *Server) checkBytes(r store.Relay, m *store.RelayMailbox, n uint64) error {
	for i, k := range m.Quotas {
		if k == (store.RelayQuotaKey{}) {
			continue
		}
		u, err := r.Quota(k)
		if err != nil {
			return err
		}
		if _, limit := s.res.quotaLimits(i); u.Bytes+n > limit {
			return quotaRefusal{refusal{fmt.Errorf("%w: the mailboxes made by its %s hold %d bytes", protocol.ErrMailboxQuota, quotaWho(i), u.Bytes)}, quotaNames[i][1]}
		}
	}
	return nil
}

func quotaWho(i int) string {
	if i == quotaPeer {
		return "peer"
	}
	return "address range"
}

// quotaRefusal is a refusal for a creator quota, with the quota's name for
// the metrics.
type quotaRefusal struct {
	refusal
	quota string
}
