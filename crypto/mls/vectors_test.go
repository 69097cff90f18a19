package mls

// The MLS working group's interoperability vectors (testdata/mlswg, from
// github.com/mlswg/mls-implementations; formats in test-vectors.md there).
// Each test logs, per file, how many cases passed and how many were
// skipped because they use a cipher suite this package does not implement
// (X448 and Ed448); run with -v to see the counts.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// hexBytes decodes a JSON hex string; null decodes to nil.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = append([]byte{}, v...)
	return nil
}

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mlswg", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// tally counts the cases of one vector file.
type tally struct {
	t                *testing.T
	file             string
	passed, skipped  int
	failedBeforeCase bool
}

func newTally(t *testing.T, file string) *tally {
	tl := &tally{t: t, file: file, failedBeforeCase: t.Failed()}
	t.Cleanup(func() {
		t.Logf("%s: %d passed, %d skipped (unsupported cipher suite)", tl.file, tl.passed, tl.skipped)
		if tl.passed == 0 {
			t.Errorf("%s: no case passed", tl.file)
		}
	})
	return tl
}

// suite returns the suite of a case, or nil (counted as skipped) when it is
// not implemented.
func (tl *tally) suite(cs uint16) *suite {
	s, err := lookupSuite(CipherSuite(cs))
	if err != nil {
		tl.skipped++
		return nil
	}
	return s
}

// run runs one case as a subtest and counts it if it passed.
func (tl *tally) run(name string, f func(t *testing.T)) {
	if tl.t.Run(name, f) {
		tl.passed++
	}
}

func optU32(v *uint32) (uint32, bool) {
	if v == nil {
		return 0, false
	}
	return *v, true
}

func TestVectorsTreeMath(t *testing.T) {
	var cases []struct {
		NLeaves uint32    `json:"n_leaves"`
		NNodes  uint32    `json:"n_nodes"`
		Root    uint32    `json:"root"`
		Left    []*uint32 `json:"left"`
		Right   []*uint32 `json:"right"`
		Parent  []*uint32 `json:"parent"`
		Sibling []*uint32 `json:"sibling"`
	}
	loadVectors(t, "tree-math.json", &cases)
	tl := newTally(t, "tree-math.json")
	for _, c := range cases {
		tl.run("", func(t *testing.T) {
			if got := nodeWidth(c.NLeaves); got != c.NNodes {
				t.Fatalf("n_nodes(%d) = %d, want %d", c.NLeaves, got, c.NNodes)
			}
			r := root(c.NLeaves)
			if uint32(r) != c.Root {
				t.Fatalf("root(%d) = %d, want %d", c.NLeaves, r, c.Root)
			}
			for i := range c.NNodes {
				x := nodeIndex(i)
				check := func(what string, want *uint32, ok bool, got nodeIndex) {
					t.Helper()
					w, present := optU32(want)
					if present != ok || (ok && uint32(got) != w) {
						t.Errorf("%s(%d) in %d leaves = %d (%v), want %v", what, i, c.NLeaves, got, ok, want)
					}
				}
				if x.isLeaf() {
					check("left", c.Left[i], false, 0)
					check("right", c.Right[i], false, 0)
				} else {
					check("left", c.Left[i], true, x.left())
					check("right", c.Right[i], true, x.right())
				}
				if x == r {
					check("parent", c.Parent[i], false, 0)
					check("sibling", c.Sibling[i], false, 0)
				} else {
					check("parent", c.Parent[i], true, x.parent())
					check("sibling", c.Sibling[i], true, x.sibling())
				}
			}
		})
	}
}

func TestVectorsDeserialization(t *testing.T) {
	var cases []struct {
		Header hexBytes `json:"vlbytes_header"`
		Length int      `json:"length"`
	}
	loadVectors(t, "deserialization.json", &cases)
	tl := newTally(t, "deserialization.json")
	for _, c := range cases {
		tl.run("", func(t *testing.T) {
			r := &reader{b: c.Header}
			if got := r.varint(); r.err != nil || got != c.Length || len(r.b) != 0 {
				t.Fatalf("varint(%x) = %d, %v; want %d", []byte(c.Header), got, r.err, c.Length)
			}
			w := &writer{}
			w.varint(c.Length)
			if !bytes.Equal(w.b, c.Header) {
				t.Fatalf("varint encoding of %d = %x, want %x", c.Length, w.b, []byte(c.Header))
			}
		})
	}
}

func TestVectorsCryptoBasics(t *testing.T) {
	var cases []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		RefHash     struct {
			Label string   `json:"label"`
			Value hexBytes `json:"value"`
			Out   hexBytes `json:"out"`
		} `json:"ref_hash"`
		ExpandWithLabel struct {
			Secret  hexBytes `json:"secret"`
			Label   string   `json:"label"`
			Context hexBytes `json:"context"`
			Length  int      `json:"length"`
			Out     hexBytes `json:"out"`
		} `json:"expand_with_label"`
		DeriveSecret struct {
			Secret hexBytes `json:"secret"`
			Label  string   `json:"label"`
			Out    hexBytes `json:"out"`
		} `json:"derive_secret"`
		DeriveTreeSecret struct {
			Secret     hexBytes `json:"secret"`
			Label      string   `json:"label"`
			Generation uint32   `json:"generation"`
			Length     int      `json:"length"`
			Out        hexBytes `json:"out"`
		} `json:"derive_tree_secret"`
		SignWithLabel struct {
			Priv      hexBytes `json:"priv"`
			Pub       hexBytes `json:"pub"`
			Content   hexBytes `json:"content"`
			Label     string   `json:"label"`
			Signature hexBytes `json:"signature"`
		} `json:"sign_with_label"`
		EncryptWithLabel struct {
			Priv       hexBytes `json:"priv"`
			Pub        hexBytes `json:"pub"`
			Label      string   `json:"label"`
			Context    hexBytes `json:"context"`
			Plaintext  hexBytes `json:"plaintext"`
			KEMOutput  hexBytes `json:"kem_output"`
			Ciphertext hexBytes `json:"ciphertext"`
		} `json:"encrypt_with_label"`
	}
	loadVectors(t, "crypto-basics.json", &cases)
	tl := newTally(t, "crypto-basics.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			if got := s.refHash(c.RefHash.Label, c.RefHash.Value); !bytes.Equal(got, c.RefHash.Out) {
				t.Errorf("RefHash = %x, want %x", got, []byte(c.RefHash.Out))
			}
			e := c.ExpandWithLabel
			if got := s.expandWithLabel(e.Secret, e.Label, e.Context, e.Length); !bytes.Equal(got, e.Out) {
				t.Errorf("ExpandWithLabel = %x, want %x", got, []byte(e.Out))
			}
			if got := s.deriveSecret(c.DeriveSecret.Secret, c.DeriveSecret.Label); !bytes.Equal(got, c.DeriveSecret.Out) {
				t.Errorf("DeriveSecret = %x, want %x", got, []byte(c.DeriveSecret.Out))
			}
			d := c.DeriveTreeSecret
			if got := s.deriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length); !bytes.Equal(got, d.Out) {
				t.Errorf("DeriveTreeSecret = %x, want %x", got, []byte(d.Out))
			}

			sw := c.SignWithLabel
			if !s.verifyWithLabel(sw.Pub, sw.Label, sw.Content, sw.Signature) {
				t.Errorf("VerifyWithLabel refused the vector's signature")
			}
			sg, err := s.parseSigner(sw.Priv)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sg.publicKey(), sw.Pub) {
				t.Errorf("public key of the signing key = %x, want %x", sg.publicKey(), []byte(sw.Pub))
			}
			sig, err := s.signWithLabel(sg, sw.Label, sw.Content)
			if err != nil {
				t.Fatal(err)
			}
			if !s.verifyWithLabel(sw.Pub, sw.Label, sw.Content, sig) {
				t.Errorf("VerifyWithLabel refused our signature")
			}
			if s.verifyWithLabel(sw.Pub, sw.Label+"x", sw.Content, sig) {
				t.Errorf("VerifyWithLabel accepted a signature under another label")
			}

			ew := c.EncryptWithLabel
			pt, err := s.decryptWithLabel(ew.Priv, ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext)
			if err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("DecryptWithLabel = %x, %v; want %x", pt, err, []byte(ew.Plaintext))
			}
			kem, ct, err := s.encryptWithLabel(ew.Pub, ew.Label, ew.Context, ew.Plaintext)
			if err != nil {
				t.Fatal(err)
			}
			pt, err = s.decryptWithLabel(ew.Priv, ew.Label, ew.Context, kem, ct)
			if err != nil || !bytes.Equal(pt, ew.Plaintext) {
				t.Errorf("round trip through EncryptWithLabel = %x, %v", pt, err)
			}
			if _, err := s.decryptWithLabel(ew.Priv, ew.Label, append(ew.Context, 0), kem, ct); err != ErrAuth {
				t.Errorf("DecryptWithLabel with another context: %v, want ErrAuth", err)
			}
		})
	}
}

func TestVectorsSecretTree(t *testing.T) {
	var cases []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		SenderData  struct {
			Secret     hexBytes `json:"sender_data_secret"`
			Ciphertext hexBytes `json:"ciphertext"`
			Key        hexBytes `json:"key"`
			Nonce      hexBytes `json:"nonce"`
		} `json:"sender_data"`
		EncryptionSecret hexBytes `json:"encryption_secret"`
		Leaves           [][]struct {
			Generation       uint32   `json:"generation"`
			HandshakeKey     hexBytes `json:"handshake_key"`
			HandshakeNonce   hexBytes `json:"handshake_nonce"`
			ApplicationKey   hexBytes `json:"application_key"`
			ApplicationNonce hexBytes `json:"application_nonce"`
		} `json:"leaves"`
	}
	loadVectors(t, "secret-tree.json", &cases)
	tl := newTally(t, "secret-tree.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			key, nonce := s.senderDataKeyNonce(c.SenderData.Secret, c.SenderData.Ciphertext)
			if !bytes.Equal(key, c.SenderData.Key) || !bytes.Equal(nonce, c.SenderData.Nonce) {
				t.Errorf("sender data key, nonce = %x, %x; want %x, %x", key, nonce, []byte(c.SenderData.Key), []byte(c.SenderData.Nonce))
			}
			lim := limits{maxGap: 1 << 10, window: 1 << 10}
			st := newSecretTree(c.EncryptionSecret, uint32(len(c.Leaves)))
			for i, gens := range c.Leaves {
				r, store, err := st.leafRatchets(s, leafIndex(i))
				if err != nil {
					t.Fatal(err)
				}
				if store != nil {
					store()
				}
				for _, g := range gens {
					for typ, want := range [][2]hexBytes{{g.HandshakeKey, g.HandshakeNonce}, {g.ApplicationKey, g.ApplicationNonce}} {
						kn, consume, err := r[typ].receive(s, g.Generation, lim)
						if err != nil {
							t.Fatalf("leaf %d generation %d: %v", i, g.Generation, err)
						}
						consume()
						if !bytes.Equal(kn.key, want[0]) || !bytes.Equal(kn.nonce, want[1]) {
							t.Errorf("leaf %d ratchet %d generation %d: key %x nonce %x, want %x %x", i, typ, g.Generation, kn.key, kn.nonce, []byte(want[0]), []byte(want[1]))
						}
					}
				}
			}
		})
	}
}

func TestVectorsKeySchedule(t *testing.T) {
	var cases []struct {
		CipherSuite       uint16   `json:"cipher_suite"`
		GroupID           hexBytes `json:"group_id"`
		InitialInitSecret hexBytes `json:"initial_init_secret"`
		Epochs            []struct {
			TreeHash                hexBytes `json:"tree_hash"`
			CommitSecret            hexBytes `json:"commit_secret"`
			PSKSecret               hexBytes `json:"psk_secret"`
			ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
			GroupContext            hexBytes `json:"group_context"`
			JoinerSecret            hexBytes `json:"joiner_secret"`
			WelcomeSecret           hexBytes `json:"welcome_secret"`
			InitSecret              hexBytes `json:"init_secret"`
			SenderDataSecret        hexBytes `json:"sender_data_secret"`
			EncryptionSecret        hexBytes `json:"encryption_secret"`
			ExporterSecret          hexBytes `json:"exporter_secret"`
			EpochAuthenticator      hexBytes `json:"epoch_authenticator"`
			ExternalSecret          hexBytes `json:"external_secret"`
			ConfirmationKey         hexBytes `json:"confirmation_key"`
			MembershipKey           hexBytes `json:"membership_key"`
			ResumptionPSK           hexBytes `json:"resumption_psk"`
			ExternalPub             hexBytes `json:"external_pub"`
			Exporter                struct {
				Label   string   `json:"label"`
				Context hexBytes `json:"context"`
				Length  int      `json:"length"`
				Secret  hexBytes `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	loadVectors(t, "key-schedule.json", &cases)
	tl := newTally(t, "key-schedule.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			initSecret := []byte(c.InitialInitSecret)
			for i, e := range c.Epochs {
				gc := groupContext{
					version: protocolVersionMLS10, cipherSuite: s.id, groupID: c.GroupID, epoch: uint64(i),
					treeHash: e.TreeHash, confirmedTranscriptHash: e.ConfirmedTranscriptHash,
				}
				gcb := gc.bytes()
				if !bytes.Equal(gcb, e.GroupContext) {
					t.Fatalf("epoch %d: group context %x, want %x", i, gcb, []byte(e.GroupContext))
				}
				joiner := s.joinerSecret(initSecret, e.CommitSecret, gcb)
				es := s.epochFromJoiner(joiner, e.PSKSecret, gcb)
				for _, v := range []struct {
					name      string
					got, want []byte
				}{
					{"joiner_secret", joiner, e.JoinerSecret},
					{"welcome_secret", es.welcome, e.WelcomeSecret},
					{"init_secret", es.init, e.InitSecret},
					{"sender_data_secret", es.senderData, e.SenderDataSecret},
					{"encryption_secret", es.encryption, e.EncryptionSecret},
					{"exporter_secret", es.exporter, e.ExporterSecret},
					{"epoch_authenticator", es.authenticator, e.EpochAuthenticator},
					{"external_secret", es.external, e.ExternalSecret},
					{"confirmation_key", es.confirmation, e.ConfirmationKey},
					{"membership_key", es.membership, e.MembershipKey},
					{"resumption_psk", es.resumption, e.ResumptionPSK},
				} {
					if !bytes.Equal(v.got, v.want) {
						t.Errorf("epoch %d: %s = %x, want %x", i, v.name, v.got, v.want)
					}
				}
				_, pub, err := s.deriveKeyPair(es.external)
				if err != nil || !bytes.Equal(pub, e.ExternalPub) {
					t.Errorf("epoch %d: external_pub = %x, %v; want %x", i, pub, err, []byte(e.ExternalPub))
				}
				x := e.Exporter
				got, err := s.exporter(es.exporter, x.Label, x.Context, x.Length)
				if err != nil || !bytes.Equal(got, x.Secret) {
					t.Errorf("epoch %d: exporter = %x, %v; want %x", i, got, err, []byte(x.Secret))
				}
				initSecret = es.init
			}
		})
	}
}

func TestVectorsPSKSecret(t *testing.T) {
	var cases []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		PSKs        []struct {
			ID    hexBytes `json:"psk_id"`
			PSK   hexBytes `json:"psk"`
			Nonce hexBytes `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret hexBytes `json:"psk_secret"`
	}
	loadVectors(t, "psk_secret.json", &cases)
	tl := newTally(t, "psk_secret.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			var ids []pskID
			var psks [][]byte
			for _, p := range c.PSKs {
				ids = append(ids, pskID{typ: pskExternal, id: p.ID, nonce: p.Nonce})
				psks = append(psks, p.PSK)
			}
			if got := s.pskSecret(ids, psks); !bytes.Equal(got, c.PSKSecret) {
				t.Errorf("psk_secret of %d PSKs = %x, want %x", len(ids), got, []byte(c.PSKSecret))
			}
		})
	}
}

// authenticatedContent is an AuthenticatedContent: the wire format, the
// content and its authentication data.
type authenticatedContent struct {
	wireFormat uint16
	content    framedContent
	auth       authData
}

func (a *authenticatedContent) encode(w *writer) {
	w.u16(a.wireFormat)
	a.content.encode(w)
	a.auth.encode(w, a.content.contentType)
}

func (a *authenticatedContent) decode(r *reader) {
	a.wireFormat = r.u16()
	a.content.decode(r)
	a.auth.decode(r, a.content.contentType)
}

func TestVectorsTranscriptHashes(t *testing.T) {
	var cases []struct {
		CipherSuite                  uint16   `json:"cipher_suite"`
		ConfirmationKey              hexBytes `json:"confirmation_key"`
		AuthenticatedContent         hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
	}
	loadVectors(t, "transcript-hashes.json", &cases)
	tl := newTally(t, "transcript-hashes.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			var ac authenticatedContent
			if err := decodeAll(c.AuthenticatedContent, ac.decode); err != nil {
				t.Fatal(err)
			}
			if ac.content.contentType != contentCommit {
				t.Fatalf("content type %d, want commit", ac.content.contentType)
			}
			confirmed := s.confirmedTranscriptHash(c.InterimTranscriptHashBefore, ac.wireFormat, &ac.content, ac.auth.signature)
			if !bytes.Equal(confirmed, c.ConfirmedTranscriptHashAfter) {
				t.Errorf("confirmed transcript hash = %x, want %x", confirmed, []byte(c.ConfirmedTranscriptHashAfter))
			}
			if !s.verifyMAC(c.ConfirmationKey, confirmed, ac.auth.confirmationTag) {
				t.Errorf("confirmation tag does not verify")
			}
			if got := s.interimTranscriptHash(confirmed, ac.auth.confirmationTag); !bytes.Equal(got, c.InterimTranscriptHashAfter) {
				t.Errorf("interim transcript hash = %x, want %x", got, []byte(c.InterimTranscriptHashAfter))
			}
		})
	}
}

func TestVectorsMessages(t *testing.T) {
	var cases []map[string]hexBytes
	loadVectors(t, "messages.json", &cases)
	tl := newTally(t, "messages.json")
	// Each field decodes as its structure and encodes back to its bytes.
	type codec struct {
		field string
		dec   func(r *reader) func(w *writer)
	}
	message := func(r *reader) func(*writer) {
		m := new(mlsMessage)
		m.decode(r)
		return m.encode
	}
	body := func(typ uint16) func(r *reader) func(*writer) {
		return func(r *reader) func(*writer) {
			p := &proposal{typ: typ}
			p.decodeBody(r)
			return p.encodeBody
		}
	}
	codecs := []codec{
		{"mls_welcome", message},
		{"mls_group_info", message},
		{"mls_key_package", message},
		{"public_message_application", message},
		{"public_message_proposal", message},
		{"public_message_commit", message},
		{"private_message", message},
		{"ratchet_tree", func(r *reader) func(*writer) {
			t := decodeTree(r)
			if t == nil {
				return func(*writer) {}
			}
			return t.encode
		}},
		{"group_secrets", func(r *reader) func(*writer) {
			g := new(groupSecrets)
			g.decode(r)
			return g.encode
		}},
		{"add_proposal", body(proposalAdd)},
		{"update_proposal", body(proposalUpdate)},
		{"remove_proposal", body(proposalRemove)},
		{"pre_shared_key_proposal", body(proposalPSK)},
		{"re_init_proposal", body(proposalReInit)},
		{"external_init_proposal", body(proposalExternalInit)},
		{"group_context_extensions_proposal", body(proposalGroupContextExtension)},
		{"commit", func(r *reader) func(*writer) {
			c := new(commit)
			c.decode(r)
			return c.encode
		}},
	}
	for i, c := range cases {
		tl.run("", func(t *testing.T) {
			if len(c) != len(codecs) {
				t.Fatalf("case %d has %d fields, want %d", i, len(c), len(codecs))
			}
			for _, cd := range codecs {
				in, ok := c[cd.field]
				if !ok {
					t.Fatalf("case %d has no field %s", i, cd.field)
				}
				r := &reader{b: in}
				enc := cd.dec(r)
				if err := r.done(); err != nil {
					t.Fatalf("case %d %s: %v", i, cd.field, err)
				}
				out, err := encode(enc)
				if err != nil || !bytes.Equal(out, in) {
					t.Fatalf("case %d %s: re-encoding differs (%v)", i, cd.field, err)
				}
			}
		})
	}
}

func TestVectorsMessageProtection(t *testing.T) {
	var cases []struct {
		CipherSuite             uint16   `json:"cipher_suite"`
		GroupID                 hexBytes `json:"group_id"`
		Epoch                   uint64   `json:"epoch"`
		TreeHash                hexBytes `json:"tree_hash"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		SignaturePriv           hexBytes `json:"signature_priv"`
		SignaturePub            hexBytes `json:"signature_pub"`
		EncryptionSecret        hexBytes `json:"encryption_secret"`
		SenderDataSecret        hexBytes `json:"sender_data_secret"`
		MembershipKey           hexBytes `json:"membership_key"`
		Proposal                hexBytes `json:"proposal"`
		ProposalPub             hexBytes `json:"proposal_pub"`
		ProposalPriv            hexBytes `json:"proposal_priv"`
		Commit                  hexBytes `json:"commit"`
		CommitPub               hexBytes `json:"commit_pub"`
		CommitPriv              hexBytes `json:"commit_priv"`
		Application             hexBytes `json:"application"`
		ApplicationPriv         hexBytes `json:"application_priv"`
	}
	loadVectors(t, "message-protection.json", &cases)
	tl := newTally(t, "message-protection.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			gc := (&groupContext{
				version: protocolVersionMLS10, cipherSuite: s.id, groupID: c.GroupID, epoch: c.Epoch,
				treeHash: c.TreeHash, confirmedTranscriptHash: c.ConfirmedTranscriptHash,
			}).bytes()
			sg, err := s.parseSigner(c.SignaturePriv)
			if err != nil {
				t.Fatal(err)
			}
			lim := limits{maxGap: 1000, window: 100}
			body := func(ct *framedContent) []byte {
				return mustEncode(func(w *writer) {
					switch ct.contentType {
					case contentApplication:
						w.bytes(ct.applicationData)
					default:
						ct.encodeBody(w)
					}
				})
			}
			// unprotectPublic checks a PublicMessage from leaf 1 and returns
			// its content.
			unprotectPublic := func(b []byte) *framedContent {
				t.Helper()
				m, err := parseMessage(b)
				if err != nil || m.publicMessage == nil {
					t.Fatalf("public message: %v", err)
				}
				pm := m.publicMessage
				if pm.content.sender != (sender{typ: senderMember, index: 1}) {
					t.Fatalf("sender %+v", pm.content.sender)
				}
				if !bytes.Equal(s.membershipTag(c.MembershipKey, &pm.content, &pm.auth, gc), pm.membershipTag) {
					t.Fatalf("membership tag does not verify")
				}
				if !s.verifyContent(c.SignaturePub, wireFormatPublicMessage, &pm.content, gc, pm.auth.signature) {
					t.Fatalf("signature does not verify")
				}
				return &pm.content
			}
			// unprotectPrivate decrypts a PrivateMessage with a fresh secret
			// tree and checks its signature.
			unprotectPrivate := func(b []byte) *framedContent {
				t.Helper()
				m, err := parseMessage(b)
				if err != nil || m.privateMessage == nil {
					t.Fatalf("private message: %v", err)
				}
				pm := m.privateMessage
				sd, err := s.openSenderData(pm, c.SenderDataSecret)
				if err != nil || sd.leaf != 1 {
					t.Fatalf("sender data: %+v, %v", sd, err)
				}
				st := newSecretTree(c.EncryptionSecret, 2)
				r, _, err := st.leafRatchets(s, 1)
				if err != nil {
					t.Fatal(err)
				}
				kn, _, err := r[ratchetType(pm.contentType)].receive(s, sd.generation, lim)
				if err != nil {
					t.Fatal(err)
				}
				ct, auth, err := s.openContent(pm, sd, kn)
				if err != nil {
					t.Fatal(err)
				}
				if !s.verifyContent(c.SignaturePub, wireFormatPrivateMessage, ct, gc, auth.signature) {
					t.Fatalf("signature does not verify")
				}
				return ct
			}
			protect := func(wireFormat uint16, ct *framedContent) []byte {
				t.Helper()
				sig, err := s.signContent(sg, wireFormat, ct, gc)
				if err != nil {
					t.Fatal(err)
				}
				auth := &authData{signature: sig}
				if ct.contentType == contentCommit {
					auth.confirmationTag = s.mac([]byte("confirmation key"), []byte("transcript"))
				}
				m := &mlsMessage{wireFormat: wireFormat}
				if wireFormat == wireFormatPublicMessage {
					if m.publicMessage, err = s.sealPublic(ct, auth, c.MembershipKey, gc); err != nil {
						t.Fatal(err)
					}
				} else {
					st := newSecretTree(c.EncryptionSecret, 2)
					r, _, _ := st.leafRatchets(s, 1)
					g, kn, err := r[ratchetType(ct.contentType)].send(s)
					if err != nil {
						t.Fatal(err)
					}
					if m.privateMessage, err = s.sealPrivate(ct, auth, c.SenderDataSecret, g, kn, 32, rand.Reader); err != nil {
						t.Fatal(err)
					}
				}
				return mustEncode(m.encode)
			}
			content := func(typ uint8, raw []byte) *framedContent {
				t.Helper()
				ct := &framedContent{groupID: c.GroupID, epoch: c.Epoch, sender: sender{typ: senderMember, index: 1}, authenticatedData: []byte{}, contentType: typ}
				r := &reader{b: raw}
				switch typ {
				case contentApplication:
					ct.applicationData = raw
					r.b = nil
				case contentProposal:
					ct.proposal = new(proposal)
					ct.proposal.decode(r)
				case contentCommit:
					ct.commit = new(commit)
					ct.commit.decode(r)
				}
				if err := r.done(); err != nil {
					t.Fatal(err)
				}
				return ct
			}
			for _, v := range []struct {
				typ           uint8
				raw, pub, prv []byte
			}{
				{contentProposal, c.Proposal, c.ProposalPub, c.ProposalPriv},
				{contentCommit, c.Commit, c.CommitPub, c.CommitPriv},
				{contentApplication, c.Application, nil, c.ApplicationPriv},
			} {
				if v.pub != nil {
					if got := body(unprotectPublic(v.pub)); !bytes.Equal(got, v.raw) {
						t.Errorf("content type %d: public message carries %x, want %x", v.typ, got, v.raw)
					}
					if got := body(unprotectPublic(protect(wireFormatPublicMessage, content(v.typ, v.raw)))); !bytes.Equal(got, v.raw) {
						t.Errorf("content type %d: our public message carries %x", v.typ, got)
					}
				} else if _, err := s.sealPublic(content(v.typ, v.raw), &authData{}, c.MembershipKey, gc); err == nil {
					t.Errorf("application data protected as a public message")
				}
				if got := body(unprotectPrivate(v.prv)); !bytes.Equal(got, v.raw) {
					t.Errorf("content type %d: private message carries %x, want %x", v.typ, got, v.raw)
				}
				if got := body(unprotectPrivate(protect(wireFormatPrivateMessage, content(v.typ, v.raw)))); !bytes.Equal(got, v.raw) {
					t.Errorf("content type %d: our private message carries %x", v.typ, got)
				}
			}
		})
	}
}

// acceptAll is the credential validator of the vector tests: the vectors
// use basic credentials with arbitrary identities.
func acceptAll(Credential, []byte, *Credential) error { return nil }

func TestVectorsTreeValidation(t *testing.T) {
	var cases []struct {
		CipherSuite uint16     `json:"cipher_suite"`
		Tree        hexBytes   `json:"tree"`
		GroupID     hexBytes   `json:"group_id"`
		Resolutions [][]uint32 `json:"resolutions"`
		TreeHashes  []hexBytes `json:"tree_hashes"`
	}
	loadVectors(t, "tree-validation.json", &cases)
	tl := newTally(t, "tree-validation.json")
	for i, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			tree, err := parseTree(c.Tree)
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			if int(nodeWidth(tree.size())) != len(c.TreeHashes) {
				t.Fatalf("case %d: tree of %d nodes, vector has %d", i, nodeWidth(tree.size()), len(c.TreeHashes))
			}
			for x := range c.TreeHashes {
				var want []nodeIndex
				for _, y := range c.Resolutions[x] {
					want = append(want, nodeIndex(y))
				}
				if got := tree.resolution(nil, nodeIndex(x)); !slices.Equal(got, want) {
					t.Errorf("case %d: resolution(%d) = %v, want %v", i, x, got, want)
				}
				if got := tree.treeHash(s, nodeIndex(x)); !bytes.Equal(got, c.TreeHashes[x]) {
					t.Errorf("case %d: tree hash of node %d = %x, want %x", i, x, got, []byte(c.TreeHashes[x]))
				}
			}
			if err := s.validateTree(tree, c.GroupID, nil, acceptAll, 0); err != nil {
				t.Errorf("case %d: %v", i, err)
			}
			if !bytes.Equal(tree.bytes(), c.Tree) {
				t.Errorf("case %d: tree re-encodes differently", i)
			}
		})
	}
}

func TestVectorsTreeOperations(t *testing.T) {
	var cases []struct {
		CipherSuite    uint16   `json:"cipher_suite"`
		TreeBefore     hexBytes `json:"tree_before"`
		Proposal       hexBytes `json:"proposal"`
		ProposalSender uint32   `json:"proposal_sender"`
		TreeHashBefore hexBytes `json:"tree_hash_before"`
		TreeAfter      hexBytes `json:"tree_after"`
		TreeHashAfter  hexBytes `json:"tree_hash_after"`
	}
	loadVectors(t, "tree-operations.json", &cases)
	tl := newTally(t, "tree-operations.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			tree, err := parseTree(c.TreeBefore)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.rootHash(s); !bytes.Equal(got, c.TreeHashBefore) {
				t.Fatalf("tree hash before = %x, want %x", got, []byte(c.TreeHashBefore))
			}
			var p proposal
			if err := decodeAll(c.Proposal, p.decode); err != nil {
				t.Fatal(err)
			}
			switch p.typ {
			case proposalAdd:
				tree.addLeaf(&p.add.leafNode)
			case proposalUpdate:
				tree.updateLeaf(leafIndex(c.ProposalSender), p.update)
			case proposalRemove:
				tree.removeLeaf(p.remove)
				tree.truncate()
			default:
				t.Fatalf("proposal type %d", p.typ)
			}
			if got := tree.bytes(); !bytes.Equal(got, c.TreeAfter) {
				t.Errorf("tree after proposal %d differs", p.typ)
			}
			if got := tree.rootHash(s); !bytes.Equal(got, c.TreeHashAfter) {
				t.Errorf("tree hash after = %x, want %x", got, []byte(c.TreeHashAfter))
			}
		})
	}
}

func TestVectorsTreeKEM(t *testing.T) {
	var cases []struct {
		CipherSuite             uint16   `json:"cipher_suite"`
		GroupID                 hexBytes `json:"group_id"`
		Epoch                   uint64   `json:"epoch"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		RatchetTree             hexBytes `json:"ratchet_tree"`
		LeavesPrivate           []struct {
			Index          uint32   `json:"index"`
			EncryptionPriv hexBytes `json:"encryption_priv"`
			SignaturePriv  hexBytes `json:"signature_priv"`
			PathSecrets    []struct {
				Node       uint32   `json:"node"`
				PathSecret hexBytes `json:"path_secret"`
			} `json:"path_secrets"`
		} `json:"leaves_private"`
		UpdatePaths []struct {
			Sender        uint32     `json:"sender"`
			UpdatePath    hexBytes   `json:"update_path"`
			PathSecrets   []hexBytes `json:"path_secrets"`
			CommitSecret  hexBytes   `json:"commit_secret"`
			TreeHashAfter hexBytes   `json:"tree_hash_after"`
		} `json:"update_paths"`
	}
	loadVectors(t, "treekem.json", &cases)
	tl := newTally(t, "treekem.json")
	for i, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			tree, err := parseTree(c.RatchetTree)
			if err != nil {
				t.Fatal(err)
			}
			privs := map[leafIndex]*treePrivate{}
			signers := map[leafIndex]*signer{}
			for _, lp := range c.LeavesPrivate {
				l := leafIndex(lp.Index)
				p := &treePrivate{leaf: l, leafKey: lp.EncryptionPriv, pathKeys: map[nodeIndex][]byte{}}
				if pub, err := s.hpkePublicOf(lp.EncryptionPriv); err != nil || !bytes.Equal(pub, tree.leaf(l).encryptionKey) {
					t.Fatalf("case %d: leaf %d private key does not match the tree (%v)", i, l, err)
				}
				for _, ps := range lp.PathSecrets {
					priv, pub, err := s.nodeKeyPair(ps.PathSecret)
					x := nodeIndex(ps.Node)
					if err != nil || tree.blank(x) || !bytes.Equal(pub, tree.encryptionKey(x)) {
						t.Fatalf("case %d: leaf %d path secret for node %d does not match the tree (%v)", i, l, x, err)
					}
					p.pathKeys[x] = priv
				}
				privs[l] = p
				if signers[l], err = s.parseSigner(lp.SignaturePriv); err != nil {
					t.Fatal(err)
				}
			}
			gcFor := func(treeHash []byte) []byte {
				return (&groupContext{version: protocolVersionMLS10, cipherSuite: s.id, groupID: c.GroupID, epoch: c.Epoch,
					treeHash: treeHash, confirmedTranscriptHash: c.ConfirmedTranscriptHash}).bytes()
			}
			for k, up := range c.UpdatePaths {
				sender := leafIndex(up.Sender)
				var path updatePath
				if err := decodeAll(up.UpdatePath, path.decode); err != nil {
					t.Fatal(err)
				}
				after := tree.clone()
				if err := s.mergePath(after, sender, &path, nil); err != nil {
					t.Fatalf("case %d path %d: %v", i, k, err)
				}
				if err := s.validateLeafNode(&path.leafNode, &leafCheck{source: leafSourceCommit, groupID: c.GroupID, leaf: sender}, acceptAll); err != nil {
					t.Errorf("case %d path %d: leaf node: %v", i, k, err)
				}
				if got := after.rootHash(s); !bytes.Equal(got, up.TreeHashAfter) {
					t.Errorf("case %d path %d: tree hash after = %x, want %x", i, k, got, []byte(up.TreeHashAfter))
				}
				gc := gcFor(after.rootHash(s))
				for l, p := range privs {
					if l == sender {
						continue
					}
					commitSecret, _, first, err := s.decryptPath(after, p, sender, &path, nil, gc)
					if err != nil {
						t.Fatalf("case %d path %d: leaf %d: %v", i, k, l, err)
					}
					if !bytes.Equal(first, up.PathSecrets[l]) {
						t.Errorf("case %d path %d: leaf %d decrypted path secret %x, want %x", i, k, l, first, []byte(up.PathSecrets[l]))
					}
					if !bytes.Equal(commitSecret, up.CommitSecret) {
						t.Errorf("case %d path %d: leaf %d commit secret %x, want %x", i, k, l, commitSecret, []byte(up.CommitSecret))
					}
				}

				// A new path from the same sender reaches everyone.
				mine := tree.clone()
				res, err := s.createPath(mine, privs[sender], tree.leaf(sender), nil, c.GroupID, signers[sender], gcFor, rand.Reader)
				if err != nil {
					t.Fatalf("case %d path %d: create: %v", i, k, err)
				}
				theirs := tree.clone()
				if err := s.mergePath(theirs, sender, res.path, nil); err != nil {
					t.Fatalf("case %d path %d: merge our path: %v", i, k, err)
				}
				if !bytes.Equal(theirs.rootHash(s), mine.rootHash(s)) {
					t.Fatalf("case %d path %d: trees differ after our path", i, k)
				}
				gc = gcFor(theirs.rootHash(s))
				for l, p := range privs {
					if l == sender {
						continue
					}
					commitSecret, _, _, err := s.decryptPath(theirs, p, sender, res.path, nil, gc)
					if err != nil || !bytes.Equal(commitSecret, res.commitSecret) {
						t.Errorf("case %d path %d: leaf %d gets commit secret %x, %v; want %x", i, k, l, commitSecret, err, res.commitSecret)
					}
				}
			}
		})
	}
}
