package protocol

// Stream protocol IDs. Node converts them to libp2p protocol.IDs; a new
// major version of a protocol gets a new ID next to the old one, so both can
// be served during an upgrade.
const (
	// MsgProtocol is direct delivery: one long-lived stream per peer, Deliver
	// frames one way and Ack frames the other. Frames up to MaxMsgFrame.
	MsgProtocol = "/sealpost/msg/1.0.0"
	// BundleProtocol is bundle fetch: one BundleRequest, one BundleResponse,
	// then the stream is closed. Frames up to MaxBundleFrame.
	BundleProtocol = "/sealpost/bundle/1.0.0"
	// RelayProtocol is the relay service (mailboxes, deposits, fetches;
	// docs/PROTOCOL.md §10). Frames up to MaxRelayFrame.
	RelayProtocol = "/sealpost/relay/1.0.0"
	// BlobProtocol carries attachment blobs, between nodes and to and from
	// relays: requests and responses in frames up to MaxBlobFrame, a blob's
	// bytes unframed after the frame that announces them.
	BlobProtocol = "/sealpost/blob/1.0.0"
	// GroupLogProtocol is a community relay's group logs: the ciphertext
	// log of a group, read and appended to with an epoch's token, and the
	// order of its commits. Frames up to MaxGroupLogFrame.
	GroupLogProtocol = "/sealpost/grouplog/1.0.0"
	// GroupReceiptProtocol carries a group member's delivery receipts
	// straight to the device that sent the messages: one GroupReceipt
	// frame, answered with one Ack. Frames up to MaxGroupReceipt.
	GroupReceiptProtocol = "/sealpost/groupreceipt/1.0.0"
	// GossipProtocol is gossipsub v1.2 under sealpost's own name: the
	// protocol group members exchange GroupMessages on (node/gossip).
	// pubsub frames it itself, in RPCs of its own.
	GossipProtocol = "/sealpost/meshsub/1.2.0"
)

// DHTPrefix is the Kademlia protocol prefix: sealpost's DHT speaks
// "/sealpost/kad/1.0.0" and stays apart from the public IPFS DHT.
const DHTPrefix = "/sealpost"

// FrameLimit returns the frame limit of a stream protocol, and false for an
// ID this package does not know. A node that serves a protocol reads its
// frames with NewFrameReader(stream, FrameLimit(id)).
func FrameLimit(id string) (int, bool) {
	switch id {
	case MsgProtocol:
		return MaxMsgFrame, true
	case BundleProtocol:
		return MaxBundleFrame, true
	case RelayProtocol:
		return MaxRelayFrame, true
	case BlobProtocol:
		return MaxBlobFrame, true
	case GroupLogProtocol:
		return MaxGroupLogFrame, true
	}
	return 0, false
}
