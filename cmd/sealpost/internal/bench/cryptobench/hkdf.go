package cryptobench

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// hkdfKey is HKDF-SHA256 with no salt and a 32-byte output, as crypto/seal
// uses it.
func hkdfKey(secret []byte, info string) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, info, 32)
}
