// Package mls implements the Messaging Layer Security protocol (RFC 9420):
// group key agreement with forward secrecy and post-compromise security,
// for groups whose membership changes in O(log n) messages.
//
// # Groups
//
// A member is a client with a credential (who it is, checked by the
// caller's CredentialValidator) and a SignatureKey. One member creates a
// group (NewGroup); others publish KeyPackages (NewKeyPackage), which a
// member adds by committing (Group.Commit with CommitOptions.Add). The
// commit goes to every member; the Welcome it produces goes to the new
// members, who Join with it and the KeyPackagePrivate they kept.
//
//	g, _ := mls.NewGroup(cfg, groupID, cred, key, mls.GroupOptions{}, rand)
//	commit, _ := g.Commit(mls.CommitOptions{Add: []*mls.KeyPackage{kp}}, now, rand)
//	// send commit to the group; when the delivery service orders it:
//	r, _ := g.Process(commit, now) // r.Commit.Own, r.Commit.Welcome for kp's owner
//
// # Messages
//
// Group.Encrypt protects application data; Group.Process takes every
// message from the group, in the order the delivery service gives, and
// says what it was (Received): application data, a proposal it keeps for
// the next commit, or a commit that moves the group to its next epoch.
// A commit made with Group.Commit is pending until it comes back through
// Process (or MergePendingCommit): if another member's commit for the
// same epoch arrives first, that one wins and the pending one is void.
//
// Messages of an epoch the member has not reached fail with ErrEpochAhead:
// keep them and process them again after the next commit. Application
// messages of the last Config.PastEpochs epochs still decrypt.
//
// # What the caller must do
//
//   - Store the group (MarshalBinary) after every call that changed it,
//     in the same transaction as what the call produced (a message to
//     send, a plaintext, a Welcome). A call that fails changes nothing.
//     The state holds every secret of the member: store it encrypted.
//   - Deliver a commit's Welcome only once the commit is accepted
//     (CommitInfo.Welcome on the Received of the member's own commit).
//   - Supply Config.ValidateCredential: it is how members know who is in
//     the group.
//   - Not share a Group between goroutines.
//
// # Randomness and time
//
// Every random value the protocol chooses (keys, path secrets, nonces,
// reuse guards) is read from the io.Reader the caller passes, except the
// ephemeral keys of HPKE encapsulation and ECDSA nonces, which crypto/hpke
// and crypto/ecdsa draw from crypto/rand. Time is passed in where a
// KeyPackage's lifetime is checked.
//
// # Profile
//
// Cipher suites 0x0001, 0x0002, 0x0003, 0x0005 and 0x0007 of RFC 9420,
// and MLS128MLKEM768X25519AES128GCMSHA256Ed25519 (X-Wing, the hybrid
// post-quantum suite sealpost's groups use). Credentials of type basic
// and x509 (their meaning is the validator's). GroupContext extensions:
// required_capabilities and external_senders. docs/PROTOCOL.md lists
// what is implemented and what is refused.
package mls
