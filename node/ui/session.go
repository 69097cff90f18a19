package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"sync"
	"time"
)

// Limits of logins and sessions. Both live in memory only: a daemon that
// restarts forgets them, and `sealpost ui` logs in again.
const (
	// LoginTTL is how long a login link works (once).
	LoginTTL = 10 * time.Minute
	// SessionTTL is how long a session lasts after its login.
	SessionTTL = 30 * 24 * time.Hour
	// maxLogins and maxSessions bound what the daemon remembers; past
	// them, the one that would expire first goes.
	maxLogins   = 16
	maxSessions = 64
	// secretLen is the length of a login token or session ID, in random
	// bytes.
	secretLen = 32
)

// secrets is a set of one kind of secret (login tokens, or session IDs),
// each with its expiry. It keeps only their SHA-256 hashes, so a lookup
// in the map reveals nothing useful through its timing, and a memory dump
// gives no usable secret.
type secrets struct {
	max int
	m   map[[sha256.Size]byte]time.Time
}

func newSecrets(max int) secrets {
	return secrets{max: max, m: map[[sha256.Size]byte]time.Time{}}
}

// add remembers a new random secret that expires at exp, forgetting
// expired ones and, if still full, the one that expires first.
func (s *secrets) add(rand io.Reader, now, exp time.Time) (string, error) {
	var b [secretLen]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("ui: random: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b[:])
	s.expire(now)
	for len(s.m) >= s.max {
		var first [sha256.Size]byte
		var at time.Time
		for h, e := range s.m {
			if at.IsZero() || e.Before(at) {
				first, at = h, e
			}
		}
		delete(s.m, first)
	}
	s.m[sha256.Sum256([]byte(secret))] = exp
	return secret, nil
}

// valid reports whether secret is live at now.
func (s *secrets) valid(secret string, now time.Time) bool {
	exp, ok := s.m[hashSecret(secret)]
	return ok && now.Before(exp)
}

// take reports whether secret is live at now and forgets it.
func (s *secrets) take(secret string, now time.Time) bool {
	h := hashSecret(secret)
	exp, ok := s.m[h]
	delete(s.m, h)
	return ok && now.Before(exp)
}

func (s *secrets) expire(now time.Time) {
	for h, exp := range s.m {
		if !now.Before(exp) {
			delete(s.m, h)
		}
	}
}

// hashSecret hashes what a request presented; a value of the wrong form
// hashes to something that is never in a set.
func hashSecret(secret string) [sha256.Size]byte {
	if len(secret) != base64.RawURLEncoding.EncodedLen(secretLen) {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256([]byte(secret))
}

// sessions are the login tokens handed out and the sessions they became.
type sessions struct {
	mu     sync.Mutex
	logins secrets
	live   secrets
}

func newSessions() *sessions {
	return &sessions{logins: newSecrets(maxLogins), live: newSecrets(maxSessions)}
}
