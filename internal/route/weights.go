package route

import "math/rand/v2"

// Pick returns the pool for a new request: Canary for CanaryWeight
// percent of requests, Live for the rest. key is the request's affinity
// key (the AffinityHeader value), "" when it has none: the same key picks
// the same pool for as long as the weight holds, and raising the weight
// only moves keys from Live to Canary. Without a key it draws one random
// number. It takes no lock and allocates nothing.
func (t *Table) Pick(key string) *Entry {
	if t.Canary == nil || t.CanaryWeight <= 0 {
		return t.Live
	}
	if t.CanaryWeight >= 100 {
		return t.Canary
	}
	var x uint64
	if key != "" {
		x = KeyHash(key)
	} else {
		x = rand.Uint64()
	}
	return t.PickWith(x)
}

// PickWith is Pick with the number drawn: x's bucket (x mod 100) below
// CanaryWeight picks Canary. Tests feed it a sequence to check shares.
func (t *Table) PickWith(x uint64) *Entry {
	if t.Canary != nil && int(x%100) < t.CanaryWeight {
		return t.Canary
	}
	return t.Live
}

// Shares reports whether e gets new requests from Pick: outside a canary
// the live pool only; during one, the live pool below weight 100 and the
// canary above 0.
func (t *Table) Shares(e *Entry) bool {
	switch {
	case e == t.Live:
		return t.Canary == nil || t.CanaryWeight < 100
	case e == t.Canary:
		return t.CanaryWeight > 0
	}
	return false
}

// Weights returns each pool's share of new requests in percent: the live
// pool 100 outside a canary.
func (t *Table) Weights() map[string]int {
	w := map[string]int{t.Live.Pool.Name: 100}
	if t.Canary != nil && t.Canary != t.Live {
		c := min(max(t.CanaryWeight, 0), 100)
		w[t.Live.Pool.Name], w[t.Canary.Pool.Name] = 100-c, c
	}
	return w
}

// KeyHash hashes an affinity key the same way in every process of a
// fleet (FNV-1a, then a 64-bit finalizer so that the low digits mix):
// two gateways send one key to the same version.
func KeyHash(key string) uint64 { return keyHash(key) }

// KeyHashBytes is KeyHash of string(key), without converting it.
func KeyHashBytes(key []byte) uint64 { return keyHash(key) }

func keyHash[T string | []byte](key T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
