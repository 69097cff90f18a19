package cryptobench

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"time"

	"github.com/sealpost/sealpost/cmd/sealpost/internal/bench"
	"github.com/sealpost/sealpost/crypto/mls"
)

// MLSOptions tune MLS.
type MLSOptions struct {
	// Duration is the measuring time of the application-message figure
	// and of the primitives. Zero means 3 seconds.
	Duration time.Duration
	// Sizes are the group sizes of the commit figures. Nil means 10, 100
	// and 1000.
	Sizes []int
	// Reps is how many times each commit operation is timed; the best
	// time counts. Zero means 5.
	Reps int
	// Suites are the cipher suites of the commit figures. Nil means the
	// post-quantum suite and 0x0001.
	Suites []mls.CipherSuite
}

// MLSAppRoundTrip is the name of the application-message figure.
const MLSAppRoundTrip = "mls_app_roundtrip"

// stateLimit is the target for a group state of 1000 members.
const stateLimit = 8 << 20

// MLS measures the figures of crypto/mls, each next to the time its
// primitives alone take in the same run (or, for sizes, the target).
//
//	mls_app_roundtrip  Encrypt + Process of a 256-byte application message
//	                   in a group of 10 (post-quantum suite, 64-byte
//	                   padding). Limit: AES-128-GCM seal + open of the
//	                   padded content and of the 12-byte sender data, Ed25519
//	                   sign + verify of the signed content, 10 HKDF-Expand
//	                   (key, nonce and next secret of the sender ratchet, and
//	                   the sender-data key and nonce, on each side).
//	mls_{add,remove,update}_{create,process}_{suite}_n{N}
//	                   making a commit (Group.Commit) and processing it as
//	                   another member (Group.Process), in ms, in a group of N
//	                   members whose tree is populated as when every member
//	                   has committed since joining (the committer's copath
//	                   and the removed member's copath hold keys). update is
//	                   a commit of no proposals (a path), remove removes one
//	                   member, add adds one (the Welcome carries the tree).
//	                   Limit: the HPKE and signature operations the
//	                   operation needs, timed alone: for making, one HPKE
//	                   encryption per path ciphertext (and per Welcome),
//	                   one DeriveKeyPair per path node and one for the new
//	                   leaf, Ed25519 signatures of the leaf node, the commit
//	                   (and the GroupInfo, plus its AEAD), and for an add the
//	                   checks of the KeyPackage (two signatures, two public
//	                   keys); for processing, one HPKE decryption, one
//	                   DeriveKeyPair per path node, one public-key decoding
//	                   per path node and for the leaf, two signature
//	                   verifications (plus the KeyPackage's for an add).
//	mls_{op}_commit_bytes_{suite}_n{N}, mls_add_welcome_bytes_{suite}_n{N}
//	                   the sizes of the commit and the Welcome.
//	mls_state_bytes_pq_n1000, mls_state_memory_pq_n1000
//	                   a member's marshalled group state, and the heap it
//	                   takes when loaded, in a group of 1000 with the
//	                   post-quantum suite. Limit: 8 MiB (ratio limit/value).
func MLS(opts MLSOptions) ([]bench.Figure, error) {
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	if opts.Sizes == nil {
		opts.Sizes = []int{10, 100, 1000}
	}
	if opts.Reps <= 0 {
		opts.Reps = 5
	}
	if opts.Suites == nil {
		opts.Suites = []mls.CipherSuite{mls.DefaultSuite, mls.MLS128DHKEMX25519AES128GCMSHA256Ed25519}
	}
	figs, err := mlsAppFigure(opts.Duration / 2)
	if err != nil {
		return nil, err
	}
	for _, cs := range opts.Suites {
		prims, err := newMLSPrimitives(cs, opts.Duration/time.Duration(2*len(opts.Suites)))
		if err != nil {
			return nil, err
		}
		for _, n := range opts.Sizes {
			fs, err := mlsCommitFigures(cs, n, opts.Reps, prims)
			if err != nil {
				return nil, fmt.Errorf("%v, %d members: %w", cs, n, err)
			}
			figs = append(figs, fs...)
		}
	}
	return figs, nil
}

func suiteTag(cs mls.CipherSuite) string {
	if cs == mls.DefaultSuite {
		return "pq"
	}
	return fmt.Sprintf("%04x", uint16(cs))
}

// acceptBasic is the benchmark's credential validator.
func acceptBasic(c mls.Credential, _ []byte, _ *mls.Credential) error {
	if c.Type != mls.CredentialBasic || len(c.Identity) == 0 {
		return fmt.Errorf("credential refused")
	}
	return nil
}

var mlsConfig = mls.Config{ValidateCredential: acceptBasic}

// mlsMember is a client with its KeyPackage and, once joined, its group.
type mlsMember struct {
	cred mls.Credential
	key  *mls.SignatureKey
	kp   *mls.KeyPackagePrivate
	g    *mls.Group
}

func newMLSMember(cs mls.CipherSuite, i int, now time.Time) (*mlsMember, error) {
	key, err := mls.GenerateSignatureKey(cs, rand.Reader)
	if err != nil {
		return nil, err
	}
	m := &mlsMember{cred: mls.Credential{Type: mls.CredentialBasic, Identity: fmt.Appendf(nil, "member-%d", i)}, key: key}
	m.kp, err = mls.NewKeyPackage(m.cred, key, now.Add(-time.Hour), now.Add(24*time.Hour), rand.Reader)
	return m, err
}

// mlsScenario is a group of n members (leaves 0 to n-1): the committer at
// leaf 0, the measured receiver at leaf 1, and the member to remove.
type mlsScenario struct {
	admin, receiver []byte // marshalled states
	remove          uint32
}

// buildMLSGroup makes a group of n members and populates the tree where the
// measured operations touch it: leaf 0 adds everyone, then one member in
// each subtree on leaf 0's copath, and in each on the removed member's
// copath, commits once (a path), every participant following.
func buildMLSGroup(cs mls.CipherSuite, n int, now time.Time) (*mlsScenario, error) {
	admin, err := newMLSMember(cs, 0, now)
	if err != nil {
		return nil, err
	}
	if admin.g, err = mls.NewGroup(mlsConfig, []byte(fmt.Sprintf("bench-%v-%d", cs, n)), admin.cred, admin.key, mls.GroupOptions{}, rand.Reader); err != nil {
		return nil, err
	}
	members := []*mlsMember{admin}
	var kps []*mls.KeyPackage
	for i := 1; i < n; i++ {
		m, err := newMLSMember(cs, i, now)
		if err != nil {
			return nil, err
		}
		members = append(members, m)
		kps = append(kps, m.kp.KeyPackage())
	}
	commit, err := admin.g.Commit(mls.CommitOptions{Add: kps}, now, rand.Reader)
	if err != nil {
		return nil, err
	}
	r, err := admin.g.Process(commit, now)
	if err != nil {
		return nil, err
	}
	width := 1 << bits.Len(uint(n-1))
	remove := width / 2
	var fill []int
	for l := 1; l <= remove; l *= 2 {
		fill = append(fill, l)
	}
	for d := 1; d < remove; d *= 2 {
		if remove+d < n {
			fill = append(fill, remove+d)
		}
	}
	participants := []*mlsMember{admin}
	for _, l := range fill {
		m := members[l]
		if m.g, err = mls.Join(mlsConfig, r.Commit.Welcome, []*mls.KeyPackagePrivate{m.kp}, mls.JoinOptions{}); err != nil {
			return nil, err
		}
		if m.g.LeafIndex() != uint32(l) {
			return nil, fmt.Errorf("member %d joined at leaf %d", l, m.g.LeafIndex())
		}
		participants = append(participants, m)
	}
	for _, l := range fill {
		c := members[l]
		commit, err := c.g.Commit(mls.CommitOptions{}, now, rand.Reader)
		if err != nil {
			return nil, err
		}
		for _, p := range participants {
			if _, err := p.g.Process(commit, now); err != nil {
				return nil, fmt.Errorf("member %d processes member %d's commit: %w", p.g.LeafIndex(), l, err)
			}
		}
	}
	s := &mlsScenario{remove: uint32(remove)}
	if s.admin, err = admin.g.MarshalBinary(); err != nil {
		return nil, err
	}
	if s.receiver, err = members[1].g.MarshalBinary(); err != nil {
		return nil, err
	}
	return s, nil
}

// mlsPrimitives are the costs (ns) of the primitives of a suite.
type mlsPrimitives struct {
	cs                    mls.CipherSuite
	encrypt, decrypt      float64 // EncryptWithLabel / DecryptWithLabel of a path secret
	derive, decodePublic  float64 // DeriveKeyPair, public-key decoding
	signPerByte, signBase float64 // Ed25519 sign: base + per byte of message
	verifyPerByte, verify float64
	aeadPerByte           float64 // AES-128-GCM seal, per byte
}

func hpkeSuite(cs mls.CipherSuite) (hpke.KEM, hpke.KDF, hpke.AEAD) {
	if cs == mls.DefaultSuite {
		return hpke.MLKEM768X25519(), hpke.HKDFSHA256(), hpke.AES128GCM()
	}
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES128GCM()
}

func newMLSPrimitives(cs mls.CipherSuite, d time.Duration) (*mlsPrimitives, error) {
	kem, kdf, aead := hpkeSuite(cs)
	ikm := make([]byte, 32)
	rand.Read(ikm)
	priv, err := kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, err
	}
	privBytes, _ := priv.Bytes()
	pubBytes := priv.PublicKey().Bytes()
	info := make([]byte, 24+100)
	secret := make([]byte, 32)
	enc, sender, err := hpke.NewSender(priv.PublicKey(), kdf, aead, info)
	if err != nil {
		return nil, err
	}
	ct, _ := sender.Seal(nil, secret)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edPub := edPriv.Public().(ed25519.PublicKey)
	small, large := make([]byte, 256), make([]byte, 64<<10)
	smallSig, largeSig := ed25519.Sign(edPriv, small), ed25519.Sign(edPriv, large)
	key := make([]byte, 16)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	buf := make([]byte, 0, len(large)+16)
	ops := []*op{
		{name: "encrypt", fn: func() error {
			pk, err := kem.NewPublicKey(pubBytes)
			if err != nil {
				return err
			}
			_, s, err := hpke.NewSender(pk, kdf, aead, info)
			if err != nil {
				return err
			}
			_, err = s.Seal(nil, secret)
			return err
		}},
		{name: "decrypt", fn: func() error {
			k, err := kem.NewPrivateKey(privBytes)
			if err != nil {
				return err
			}
			r, err := hpke.NewRecipient(enc, k, kdf, aead, info)
			if err != nil {
				return err
			}
			_, err = r.Open(nil, ct)
			return err
		}},
		{name: "derive", fn: func() error {
			k, err := kem.DeriveKeyPair(ikm)
			if err != nil {
				return err
			}
			_, err = k.Bytes()
			k.PublicKey().Bytes()
			return err
		}},
		{name: "decode_public", fn: func() error { _, err := kem.NewPublicKey(pubBytes); return err }},
		{name: "sign_small", fn: func() error { ed25519.Sign(edPriv, small); return nil }},
		{name: "sign_large", fn: func() error { ed25519.Sign(edPriv, large); return nil }},
		{name: "verify_small", fn: func() error { ed25519.Verify(edPub, small, smallSig); return nil }},
		{name: "verify_large", fn: func() error { ed25519.Verify(edPub, large, largeSig); return nil }},
		{name: "aead_large", fn: func() error { gcm.Seal(buf[:0], nonce, large, nil); return nil }},
	}
	if err := measureAll(ops, 2, d/time.Duration(2*len(ops))); err != nil {
		return nil, err
	}
	ns := map[string]float64{}
	for _, o := range ops {
		ns[o.name] = o.best
	}
	perByte := func(smallNS, largeNS float64) (base, per float64) {
		per = max(0, (largeNS-smallNS)/float64(len(large)-len(small)))
		return smallNS - per*float64(len(small)), per
	}
	p := &mlsPrimitives{cs: cs, encrypt: ns["encrypt"], decrypt: ns["decrypt"], derive: ns["derive"], decodePublic: ns["decode_public"]}
	p.signBase, p.signPerByte = perByte(ns["sign_small"], ns["sign_large"])
	p.verify, p.verifyPerByte = perByte(ns["verify_small"], ns["verify_large"])
	p.aeadPerByte = ns["aead_large"] / float64(len(large))
	return p, nil
}

func (p *mlsPrimitives) sign(n int) float64    { return p.signBase + p.signPerByte*float64(n) }
func (p *mlsPrimitives) verifyN(n int) float64 { return p.verify + p.verifyPerByte*float64(n) }

// leafNodeSize is about the size of a leaf node of the suite (its
// signature covers that much).
func leafNodeSize(cs mls.CipherSuite) int {
	if cs == mls.DefaultSuite {
		return 1216 + 200
	}
	return 32 + 200
}

// mlsCommitFigures measures the commits of a group of n members.
func mlsCommitFigures(cs mls.CipherSuite, n, reps int, p *mlsPrimitives) ([]bench.Figure, error) {
	now := time.Now()
	sc, err := buildMLSGroup(cs, n, now)
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("%s_n%d", suiteTag(cs), n)
	var figs []bench.Figure
	leaf := leafNodeSize(cs)
	for _, opName := range []string{"add", "remove", "update"} {
		create, process := math.Inf(1), math.Inf(1)
		var info *mls.CommitInfo
		var commitLen, welcomeLen int
		for range reps {
			admin, err := mls.UnmarshalGroup(mlsConfig, sc.admin)
			if err != nil {
				return nil, err
			}
			receiver, err := mls.UnmarshalGroup(mlsConfig, sc.receiver)
			if err != nil {
				return nil, err
			}
			var opts mls.CommitOptions
			switch opName {
			case "add":
				m, err := newMLSMember(cs, n, now)
				if err != nil {
					return nil, err
				}
				opts.Add = []*mls.KeyPackage{m.kp.KeyPackage()}
			case "remove":
				opts.Remove = []uint32{sc.remove}
			}
			start := time.Now()
			commit, err := admin.Commit(opts, now, rand.Reader)
			el := time.Since(start)
			if err != nil {
				return nil, err
			}
			create = min(create, float64(el.Nanoseconds()))
			start = time.Now()
			_, err = receiver.Process(commit, now)
			el = time.Since(start)
			if err != nil {
				return nil, err
			}
			process = min(process, float64(el.Nanoseconds()))
			r, err := admin.MergePendingCommit()
			if err != nil {
				return nil, err
			}
			if !slicesEqual(admin.EpochAuthenticator(), receiver.EpochAuthenticator()) {
				return nil, fmt.Errorf("%s: committer and receiver disagree", opName)
			}
			info, commitLen, welcomeLen = r.Commit, len(commit), len(r.Commit.Welcome)
		}
		// The primitives each operation needs (see MLS).
		createLimit := float64(info.PathCiphertexts)*p.encrypt + float64(info.PathNodes+1)*p.derive +
			p.sign(leaf) + p.sign(commitLen)
		processLimit := p.decrypt + float64(info.PathNodes)*p.derive + float64(info.PathNodes+1)*p.decodePublic +
			p.verifyN(leaf) + p.verifyN(commitLen)
		if opName == "add" {
			kpChecks := 2*p.verifyN(leaf) + 2*p.decodePublic
			createLimit += p.encrypt + p.sign(welcomeLen) + p.aeadPerByte*float64(welcomeLen) + kpChecks
			processLimit += kpChecks
		}
		figs = append(figs,
			durationFigure(fmt.Sprintf("mls_%s_create_%s", opName, tag), create, createLimit),
			durationFigure(fmt.Sprintf("mls_%s_process_%s", opName, tag), process, processLimit),
			bench.Figure{Name: fmt.Sprintf("mls_%s_commit_bytes_%s", opName, tag), Unit: "bytes", Value: float64(commitLen)},
		)
		if opName == "add" {
			figs = append(figs, bench.Figure{Name: fmt.Sprintf("mls_add_welcome_bytes_%s", tag), Unit: "bytes", Value: float64(welcomeLen)})
		}
	}
	if cs == mls.DefaultSuite && n == 1000 {
		fs, err := stateFigures(sc.receiver, tag)
		if err != nil {
			return nil, err
		}
		figs = append(figs, fs...)
	}
	return figs, nil
}

// durationFigure is a time in ms next to its limit; Ratio is limit/value.
func durationFigure(name string, ns, limitNS float64) bench.Figure {
	f := bench.Figure{Name: name, Unit: "ms", Value: ns / 1e6, Limit: limitNS / 1e6}
	if ns > 0 {
		f.Ratio = limitNS / ns
	}
	return f
}

// stateFigures measures a member's state on disk and in memory.
func stateFigures(state []byte, tag string) ([]bench.Figure, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g, err := mls.UnmarshalGroup(mlsConfig, state)
	if err != nil {
		return nil, err
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(g)
	mem := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	size := func(name string, v float64) bench.Figure {
		return bench.Figure{Name: name, Unit: "bytes", Value: v, Limit: stateLimit, Ratio: stateLimit / v}
	}
	return []bench.Figure{
		size("mls_state_bytes_"+tag, float64(len(state))),
		size("mls_state_memory_"+tag, max(mem, 1)),
	}, nil
}

func slicesEqual(a, b []byte) bool { return string(a) == string(b) }

// mlsAppFigure measures an application message's round trip in a group of
// 10 with the post-quantum suite.
func mlsAppFigure(d time.Duration) ([]bench.Figure, error) {
	cs := mls.DefaultSuite
	now := time.Now()
	sc, err := buildMLSGroup(cs, 10, now)
	if err != nil {
		return nil, err
	}
	alice, err := mls.UnmarshalGroup(mlsConfig, sc.admin)
	if err != nil {
		return nil, err
	}
	bob, err := mls.UnmarshalGroup(mlsConfig, sc.receiver)
	if err != nil {
		return nil, err
	}
	pt := make([]byte, payloadSize)
	msg, err := alice.Encrypt(pt, nil, rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, err := bob.Process(msg, now); err != nil {
		return nil, err
	}
	// What the round trip signs, encrypts and derives, sized as in the
	// message: the signed content (group context, sender, payload), the
	// padded content, the sender data, and the KDF labels.
	signed := make([]byte, len(msg)+120)
	padded := make([]byte, len(msg)-60)
	senderData := make([]byte, 12)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edPub := edPriv.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(edPriv, signed)
	key := make([]byte, 16)
	nonce := make([]byte, 12)
	sealed := func(b []byte) []byte {
		block, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(block)
		return gcm.Seal(nil, nonce, b, signed[:40])
	}
	paddedCT, sdCT := sealed(padded), sealed(senderData)
	secret := make([]byte, 32)
	info := string(make([]byte, 2+1+8+7+1+4))
	aeadSeal := func(b []byte) func() error {
		return func() error {
			block, err := aes.NewCipher(key)
			if err != nil {
				return err
			}
			gcm, err := cipher.NewGCM(block)
			if err != nil {
				return err
			}
			gcm.Seal(nil, nonce, b, signed[:40])
			return nil
		}
	}
	aeadOpen := func(ct []byte) func() error {
		return func() error {
			block, err := aes.NewCipher(key)
			if err != nil {
				return err
			}
			gcm, err := cipher.NewGCM(block)
			if err != nil {
				return err
			}
			_, err = gcm.Open(nil, nonce, ct, signed[:40])
			return err
		}
	}
	ops := []*op{
		{name: MLSAppRoundTrip, fn: func() error {
			m, err := alice.Encrypt(pt, nil, rand.Reader)
			if err != nil {
				return err
			}
			_, err = bob.Process(m, now)
			return err
		}},
		{name: "sign", fn: func() error { ed25519.Sign(edPriv, signed); return nil }},
		{name: "verify", fn: func() error {
			if !ed25519.Verify(edPub, signed, sig) {
				return fmt.Errorf("verify")
			}
			return nil
		}},
		{name: "seal_content", fn: aeadSeal(padded)},
		{name: "open_content", fn: aeadOpen(paddedCT)},
		{name: "seal_sender", fn: aeadSeal(senderData)},
		{name: "open_sender", fn: aeadOpen(sdCT)},
		{name: "expand", fn: func() error { _, err := hkdf.Expand(sha256.New, secret, info, 32); return err }},
	}
	if err := measureAll(ops, 3, d/time.Duration(3*len(ops))); err != nil {
		return nil, err
	}
	ns := map[string]float64{}
	for _, o := range ops {
		ns[o.name] = o.best
	}
	limit := ns["sign"] + ns["verify"] + ns["seal_content"] + ns["open_content"] + ns["seal_sender"] + ns["open_sender"] + 10*ns["expand"]
	return []bench.Figure{throughput(MLSAppRoundTrip, ns[MLSAppRoundTrip], limit)}, nil
}
