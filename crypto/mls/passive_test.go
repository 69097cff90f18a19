package mls

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestVectorsWelcome(t *testing.T) {
	var cases []struct {
		CipherSuite uint16   `json:"cipher_suite"`
		InitPriv    hexBytes `json:"init_priv"`
		SignerPub   hexBytes `json:"signer_pub"`
		KeyPackage  hexBytes `json:"key_package"`
		Welcome     hexBytes `json:"welcome"`
	}
	loadVectors(t, "welcome.json", &cases)
	tl := newTally(t, "welcome.json")
	for _, c := range cases {
		s := tl.suite(c.CipherSuite)
		if s == nil {
			continue
		}
		tl.run(s.name, func(t *testing.T) {
			kp, err := ParseKeyPackage(c.KeyPackage)
			if err != nil {
				t.Fatal(err)
			}
			m, err := parseMessage(c.Welcome)
			if err != nil || m.welcome == nil {
				t.Fatalf("welcome: %v", err)
			}
			w := m.welcome
			i := slices.IndexFunc(w.secrets, func(e encryptedGroupSecrets) bool { return bytes.Equal(e.newMember, kp.ref) })
			if i < 0 {
				t.Fatal("welcome has no secrets for the key package")
			}
			pt, err := s.decryptWithLabel(c.InitPriv, "Welcome", w.encryptedGroupInfo, w.secrets[i].secrets.kemOutput, w.secrets[i].secrets.ciphertext)
			if err != nil {
				t.Fatal(err)
			}
			var gs groupSecrets
			if err := decodeAll(pt, gs.decode); err != nil {
				t.Fatal(err)
			}
			member := s.extract(gs.joinerSecret, make([]byte, s.nh))
			key, nonce := s.welcomeKeyNonce(s.deriveSecret(member, "welcome"))
			gib, err := s.aeadOpen(key, nonce, w.encryptedGroupInfo, nil)
			if err != nil {
				t.Fatal(err)
			}
			var gi groupInfo
			if err := decodeAll(gib, gi.decode); err != nil {
				t.Fatal(err)
			}
			if !s.verifyWithLabel(c.SignerPub, "GroupInfoTBS", mustEncode(gi.encodeBody), gi.signature) {
				t.Error("group info signature does not verify")
			}
			es := s.epochFromJoiner(gs.joinerSecret, nil, gi.groupContext.bytes())
			if !s.verifyMAC(es.confirmation, gi.groupContext.confirmedTranscriptHash, gi.confirmationTag) {
				t.Error("confirmation tag does not verify")
			}
		})
	}
}

// TestVectorsPassiveClient runs every passive-client scenario in
// testdata/mlswg: join by the Welcome, then follow each epoch's proposals
// and commit, comparing epoch authenticators.
func TestVectorsPassiveClient(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "mlswg", "passive-client-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no passive-client vectors: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var cases []struct {
				CipherSuite  uint16 `json:"cipher_suite"`
				ExternalPSKs []struct {
					ID  hexBytes `json:"psk_id"`
					PSK hexBytes `json:"psk"`
				} `json:"external_psks"`
				KeyPackage                hexBytes `json:"key_package"`
				SignaturePriv             hexBytes `json:"signature_priv"`
				EncryptionPriv            hexBytes `json:"encryption_priv"`
				InitPriv                  hexBytes `json:"init_priv"`
				Welcome                   hexBytes `json:"welcome"`
				RatchetTree               hexBytes `json:"ratchet_tree"`
				InitialEpochAuthenticator hexBytes `json:"initial_epoch_authenticator"`
				Epochs                    []struct {
					Proposals          []hexBytes `json:"proposals"`
					Commit             hexBytes   `json:"commit"`
					EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
				} `json:"epochs"`
			}
			loadVectors(t, name, &cases)
			tl := newTally(t, name)
			for i, c := range cases {
				s := tl.suite(c.CipherSuite)
				if s == nil {
					continue
				}
				tl.run(s.name, func(t *testing.T) {
					kp, err := ParseKeyPackage(c.KeyPackage)
					if err != nil {
						t.Fatalf("case %d: %v", i, err)
					}
					sk, err := newSignatureKey(s, c.SignaturePriv)
					if err != nil {
						t.Fatal(err)
					}
					kpp := &KeyPackagePrivate{kp: kp, initKey: c.InitPriv, encryptionKey: c.EncryptionPriv, signature: sk}
					if err := kpp.check(); err != nil {
						t.Fatalf("case %d: private keys do not match the key package: %v", i, err)
					}
					psks := map[string][]byte{}
					for _, p := range c.ExternalPSKs {
						psks[string(p.ID)] = p.PSK
					}
					cfg := Config{
						ValidateCredential: acceptAll,
						ExternalPSK:        func(id []byte) ([]byte, bool) { v, ok := psks[string(id)]; return v, ok },
						MaxLifetime:        -1,
					}
					g, err := Join(cfg, c.Welcome, []*KeyPackagePrivate{kpp}, JoinOptions{RatchetTree: c.RatchetTree})
					if err != nil {
						t.Fatalf("case %d: join: %v", i, err)
					}
					if !bytes.Equal(g.EpochAuthenticator(), c.InitialEpochAuthenticator) {
						t.Fatalf("case %d: initial epoch authenticator differs", i)
					}
					for e, ep := range c.Epochs {
						for k, p := range ep.Proposals {
							if _, err := g.Process(p, time.Unix(0, 0)); err != nil {
								t.Fatalf("case %d epoch %d proposal %d: %v", i, e, k, err)
							}
						}
						r, err := g.Process(ep.Commit, time.Unix(0, 0))
						if err != nil {
							t.Fatalf("case %d epoch %d commit: %v", i, e, err)
						}
						if r.Kind != KindCommit {
							t.Fatalf("case %d epoch %d: commit processed as kind %d", i, e, r.Kind)
						}
						if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
							t.Fatalf("case %d epoch %d: epoch authenticator differs", i, e)
						}
					}
				})
			}
		})
	}
}
