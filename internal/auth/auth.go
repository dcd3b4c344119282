// Package auth holds the client API keys of the traffic listener: a file
// of hashed keys (never plaintext at rest), each with an id and the model
// names it may use, checked in constant time.
//
// The file has one key per line, fields separated by blanks:
//
//	# id      hash                                                                     models (optional)
//	team-a    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  llama,llama-70b
//	ci        sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//
// `cutover auth hash-key` prints such a line. Blank lines and lines
// starting with # are ignored.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
)

// Key is one client key as stored: its id, the SHA-256 of the key, and
// the model names it may use (none: any).
type Key struct {
	// ID names the key in logs and metrics; never the key itself.
	ID string
	// Hash is sha256(key).
	Hash [sha256.Size]byte
	// Models are the model names (as clients send them) the key may use.
	// Empty means any.
	Models []string
}

// Allows reports whether k may use model ("" when the request names none:
// only an unrestricted key may).
func (k *Key) Allows(model string) bool {
	return len(k.Models) == 0 || (model != "" && slices.Contains(k.Models, model))
}

// Keys is a loaded keys file and the per-key request counts. Its methods
// are safe for concurrent use.
type Keys struct {
	keys []Key

	counts   []keyCounts   // parallel to keys
	rejected atomic.Uint64 // requests without a valid key
}

type keyCounts struct {
	requests  atomic.Uint64 // authenticated requests
	forbidden atomic.Uint64 // refused for a model the key may not use
}

// idPattern is what a key id may look like: it becomes a metric label.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// Load reads and parses the keys file at path.
func Load(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keys file: %w", err)
	}
	keys, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return New(keys), nil
}

// New returns Keys holding keys.
func New(keys []Key) *Keys {
	return &Keys{keys: keys, counts: make([]keyCounts, len(keys))}
}

// Parse reads a keys file's contents. Errors name the line; they never
// repeat a hash.
func Parse(b []byte) ([]Key, error) {
	var keys []Key
	ids := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("line %d: want `ID sha256:HEX [MODEL,...]`, got %d fields", n, len(f))
		}
		k := Key{ID: f[0]}
		if !idPattern.MatchString(k.ID) {
			return nil, fmt.Errorf("line %d: key id %q: use letters, digits and . _ : - (at most 64)", n, k.ID)
		}
		if prev, dup := ids[k.ID]; dup {
			return nil, fmt.Errorf("line %d: key id %q already on line %d", n, k.ID, prev)
		}
		hexHash, ok := strings.CutPrefix(f[1], "sha256:")
		raw, err := hex.DecodeString(hexHash)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("line %d: key %s: the hash must be sha256: and 64 hex digits (store hashes, never keys: cutover auth hash-key prints a line)", n, k.ID)
		}
		copy(k.Hash[:], raw)
		if prev, dup := hashes[k.Hash]; dup {
			return nil, fmt.Errorf("line %d: key %s has the same hash as line %d", n, k.ID, prev)
		}
		if len(f) == 3 {
			for _, m := range strings.Split(f[2], ",") {
				if m = strings.TrimSpace(m); m != "" {
					k.Models = append(k.Models, m)
				}
			}
		}
		ids[k.ID], hashes[k.Hash] = n, n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys: every client would be refused")
	}
	return keys, nil
}

// Line returns the keys-file line for key under id, with its allowed
// models: what `cutover auth hash-key` prints.
func Line(id, key string, models []string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("key id %q: use letters, digits and . _ : - (at most 64)", id)
	}
	if strings.TrimSpace(key) == "" || strings.ContainsAny(key, " \t\r\n") {
		return "", errors.New("the key must be one word, not empty")
	}
	h := sha256.Sum256([]byte(key))
	line := id + " sha256:" + hex.EncodeToString(h[:])
	if len(models) > 0 {
		line += " " + strings.Join(models, ",")
	}
	return line, nil
}

// Generate returns a new random key: sk-cutover- and 48 hex digits.
func Generate() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "sk-cutover-" + hex.EncodeToString(b[:])
}

// Authenticate finds the key presented in an Authorization header value
// ("Bearer KEY"; "" when absent). It hashes the key and compares it with
// every stored hash in constant time, without stopping at a match, so the
// time taken says nothing about which key matched or how close a guess
// was. It returns the key's index, or -1.
func (ks *Keys) Authenticate(authorization string) int {
	tok, ok := CutBearer(authorization)
	if !ok {
		ks.rejected.Add(1)
		return -1
	}
	h := sha256.Sum256([]byte(tok))
	found := -1
	for i := range ks.keys {
		if subtle.ConstantTimeCompare(h[:], ks.keys[i].Hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		ks.rejected.Add(1)
		return -1
	}
	ks.counts[found].requests.Add(1)
	return found
}

// CutBearer returns the credentials of a Bearer Authorization value,
// without surrounding spaces; the scheme is case-insensitive (RFC 9110
// section 11.1). ok is false for another scheme or no credentials. The
// traffic listener's client keys and the admin tokens both use it.
func CutBearer(v string) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(v[:7], "Bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(v[7:])
	return tok, tok != ""
}

// ID returns the id of key i (from Authenticate).
func (ks *Keys) ID(i int) string { return ks.keys[i].ID }

// May reports whether key i may use model, without counting a refusal
// (for listing models).
func (ks *Keys) May(i int, model string) bool { return ks.keys[i].Allows(model) }

// Allows reports whether key i may use model, counting a refusal.
func (ks *Keys) Allows(i int, model string) bool {
	if ks.keys[i].Allows(model) {
		return true
	}
	ks.counts[i].forbidden.Add(1)
	return false
}

// Same reports whether ks and o hold the same keys (ids, hashes and
// models, in order): a keys file read again unchanged.
func (ks *Keys) Same(o *Keys) bool {
	return slices.EqualFunc(ks.keys, o.keys, func(a, b Key) bool {
		return a.ID == b.ID && a.Hash == b.Hash && slices.Equal(a.Models, b.Models)
	})
}

// Carry adds the counts of prev (keys read from an earlier version of the
// file) to ks, for the key ids both have and the rejected requests, so
// the counters a reload hands over keep counting up. Requests prev counts
// after the call are not carried.
func (ks *Keys) Carry(prev *Keys) {
	ks.rejected.Add(prev.rejected.Load())
	for i, k := range ks.keys {
		for j, p := range prev.keys {
			if p.ID == k.ID {
				ks.counts[i].requests.Add(prev.counts[j].requests.Load())
				ks.counts[i].forbidden.Add(prev.counts[j].forbidden.Load())
			}
		}
	}
}

// Counts are the requests seen per key id since start.
type Counts struct {
	// Requests counts authenticated requests per key id.
	Requests map[string]uint64
	// Forbidden counts requests refused for a model, per key id.
	Forbidden map[string]uint64
	// Rejected counts requests without a valid key.
	Rejected uint64
}

// Counts returns the counters, every key id present (at 0 when unused).
func (ks *Keys) Counts() Counts {
	c := Counts{Requests: map[string]uint64{}, Forbidden: map[string]uint64{}, Rejected: ks.rejected.Load()}
	for i, k := range ks.keys {
		c.Requests[k.ID] = ks.counts[i].requests.Load()
		c.Forbidden[k.ID] = ks.counts[i].forbidden.Load()
	}
	return c
}
