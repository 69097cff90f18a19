package store

// Key layout. Every key starts with one table byte; the rest of the key is
// the record's identity in a form that sorts the way the table is scanned.
// Index tables map a sort key to the primary key, with an empty or tiny
// value. Table bytes are never reused; a new typed store takes the next free
// one (and, if existing data must be rewritten, a migration in migrate.go).
const (
	tMeta          byte = 0x00 // "schema" -> uvarint version
	tSelf          byte = 0x01 // (single key) -> Self
	tPrekey        byte = 0x02 // kind(1) id(4) -> Prekey
	tPrekeyState   byte = 0x03 // kind(1) state(1) id(4) -> ""
	tSession       byte = 0x04 // peer(32) len(1) device sid(16) -> Session
	tContact       byte = 0x05 // user(32) -> Contact
	tContactName   byte = 0x06 // name -> user(32)
	tMessage       byte = 0x07 // id(16) -> Message
	tMessageByConv byte = 0x08 // peer(32) order(8) -> id(16)
	tMessageByOrd  byte = 0x09 // order(8) -> id(16)
	tOutbox        byte = 0x0a // id(16) -> OutboxEntry
	tOutboxDue     byte = 0x0b // nextAttempt(8) id(16) -> "" (schema 2)
	tSeen          byte = 0x0c // hash(32) -> until (time)
	tSeenExpiry    byte = 0x0d // until(8) hash(32) -> ""
	tMailbox       byte = 0x0e // id(32) -> Mailbox
	tToken         byte = 0x0f // token(16) -> DepositToken
	tCounter       byte = 0x10 // name -> uint64 (8 bytes big-endian)
	tInvite        byte = 0x11 // secret(16) -> Invite
	tFile          byte = 0x12 // id(16) -> File (files.go)
	tFileByTime    byte = 0x13 // created(8) id(16) -> ""
	tFilePending   byte = 0x14 // id(16) -> ""
	tFileBlob      byte = 0x15 // hash(32) id(16) -> ""
	tSeenPrekey    byte = 0x16 // prekey(4) hash(32) -> "" (seen.go)

	// A personal node's groups (groups.go).
	tGroup            byte = 0x17 // group(32) -> Group
	tGroupState       byte = 0x18 // group(32) -> MLS state
	tGroupWork        byte = 0x19 // group(32) kind(1) n(8) -> GroupWork data; group(32) 0 kind(1) -> the last n given
	tGroupInbox       byte = 0x1a // n(8) -> GroupInboxEntry
	tGroupDelivery    byte = 0x1b // message(16) member(32) -> delivered time (zero: pending)
	tGroupUndelivered byte = 0x1c // group(32) member(32) message(16) -> ""
	tMessageByGroup   byte = 0x1d // group(32) order(8) -> id(16)
	tGroupStateMore   byte = 0x1f // group(32) part(2) -> the MLS state after its first part

	// The seen-entries of a message request's ciphertexts (seen.go).
	tSeenRequest byte = 0x1e // user(32) until(8) hash(32) -> ""

	// The relay's tables (relay.go), from 0x20 so that the personal
	// node's tables can grow below them.
	tRelayMailbox   byte = 0x20 // id(32) -> RelayMailbox
	tRelayToken     byte = 0x21 // mailbox(32) hash(32) -> RelayToken
	tRelayEnvelope  byte = 0x22 // mailbox(32) seq(8) -> RelayEnvelope
	tRelayExpiry    byte = 0x23 // until(8) mailbox(32) seq(8) -> ""
	tRelayCard      byte = 0x24 // mailbox(32) hash(32) -> card blob
	tRelayPrekey    byte = 0x25 // mailbox(32) expires(8) n(8) -> prekey blob
	tRelayPrekeyExp byte = 0x26 // expires(8) mailbox(32) n(8) -> ""
	tRelayTotals    byte = 0x27 // (single key) -> RelayTotals
	tRelayDeleting  byte = 0x28 // id(32) -> "" (mailbox deletion under way)
	tRelayQuota     byte = 0x2f // key(16) -> RelayQuota (shared by a creator's mailboxes)

	// The relay's attachment blobs (relayblobs.go).
	tRelayBlob       byte = 0x29 // hash(32) -> RelayBlob
	tRelayBlobRef    byte = 0x2a // hash(32) readcap(32) -> RelayBlobRef
	tRelayBlobRefExp byte = 0x2b // until(8) hash(32) readcap(32) -> ""
	tRelayBlobByMbox byte = 0x2c // mailbox(32) hash(32) readcap(32) -> ""
	tRelayBlobUsage  byte = 0x2d // mailbox(32) -> BlobUsage
	tRelayBlobTotals byte = 0x2e // (single key) -> RelayBlobTotals

	// The relay's group logs (relaygroups.go).
	tRelayGroupLog    byte = 0x30 // id(32) -> RelayGroupLog
	tRelayGroupEpoch  byte = 0x31 // id(32) epoch(8) -> RelayGroupEpoch
	tRelayGroupEntry  byte = 0x32 // id(32) seq(8) -> RelayGroupEntry
	tRelayGroupHash   byte = 0x33 // id(32) hash(32) -> seq(8)
	tRelayGroupExpiry byte = 0x34 // until(8) id(32) seq(8) -> ""
	tRelayGroupIdle   byte = 0x35 // until(8) id(32) -> ""
	tRelayGroupTotals byte = 0x36 // (single key) -> RelayGroupTotals

	// The relay's attachment blobs held for group logs (relayblobs.go).
	tRelayBlobByLog    byte = 0x37 // log(32) hash(32) readcap(32) -> ""
	tRelayBlobLogUsage byte = 0x38 // log(32 -> BlobUsage

	// A group's keys written after its state (groups.go).
	tGroupStateKeys byte = 0x39 // group(32) -> the MLS keys after the state (crypto/mls MarshalKeys)
)

// key concatenates a table byte and parts.
func key(table byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 1, n)
	k[0] = table
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}
