package grouprelay

import (
	"fmt"

	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// Creator quotas: a log counts, while it exists, in the quotas of the peer
// that created it and of that peer's address range (Config.Quotas: the
// relay's, node/relay, in which the creator's mailboxes count too), and
// its entries' bytes count there while stored, whoever appended them
// (Resources.PeerMax*, SubnetMax*).

// quotaNames name the quotas in refusals and metrics, by store index
// (store.RelayQuotaPeer, RelayQuotaSubnet): logs, bytes.
var quotaNames = [2][2]string{
	store.RelayQuotaPeer:   {"group_peer_logs", "group_peer_bytes"},
	store.RelayQuotaSubnet: {"group_subnet_logs", "group_subnet_bytes"},
}

func quotaWho(i int) string {
	if i == store.RelayQuotaPeer {
		return "peer"
	}
	return "address range"
}

// limits returns the logs and bytes of quota i.
func (r Resources) limits(i int) (logs, bytes uint64) {
	if i == store.RelayQuotaPeer {
		return r.PeerMaxLogs, r.PeerMaxBytes
	}
	return r.SubnetMaxLogs, r.SubnetMaxBytes
}

// quotaRefusal is a refusal for a creator quota, with the quota's name for
// the metrics.
type quotaRefusal struct {
	refusal
	quota string
}

func (r quotaRefusal) Unwrap() error { return r.err }

// checkCreate refuses a new log counting in quotas q when one of them
// holds its limit of logs.
func (s *Server) checkCreate(tx *store.Tx, q [2]store.RelayQuotaKey) error {
	for i, k := range q {
		if k == (store.RelayQuotaKey{}) {
			continue
		}
		u, err := tx.Relay().Quota(k)
		if err != nil {
			return err
		}
		if limit, _ := s.res.limits(i); u.GroupLogs >= limit {
			return quotaRefusal{refusal{fmt.Errorf("%w: %d group logs made by this %s", protocol.ErrTooManyLogs, u.GroupLogs, quotaWho(i))}, quotaNames[i][0]}
		}
	}
	return nil
}

// checkBytes refuses n more bytes into log l when one of its creator
// quotas would go over its limit of bytes.
func (s *Server) checkBytes(tx *store.Tx, l *store.RelayGroupLog, n uint64) error {
	for i, k := range l.Quotas {
		if k == (store.RelayQuotaKey{}) {
			continue
		}
		u, err := tx.Relay().Quota(k)
		if err != nil {
			return err
		}
		if _, limit := s.res.limits(i); u.GroupBytes+n > limit {
			return quotaRefusal{refusal{fmt.Errorf("%w: the group logs made by its %s hold %d bytes", protocol.ErrQuotaExceeded, quotaWho(i), u.GroupBytes)}, quotaNames[i][1]}
		}
	}
	return nil
}

// refused counts a creator quota's refusal (err is one) with the relay's.
func (s *Server) refused(err error) {
	if qr, ok := err.(quotaRefusal); ok {
		if s.cfg.QuotaRefused != nil {
			s.cfg.QuotaRefused(qr.quota)
		}
	}
}
