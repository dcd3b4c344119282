// Package store holds cutover's persisted state: one versioned document
// written with compare-and-swap, and an append-only history.
package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrConflict means the stored revision moved on since the caller read it:
// another writer (a concurrent call, another gateway) won. Read again.
var ErrConflict = errors.New("state revision conflict")

// Record is the state document at one revision.
type Record struct {
	// Revision counts successful writes, starting at 1. Zero means nothing
	// was ever written.
	Revision int64
	// Data is the document, opaque to the store. Nil when Revision is 0.
	Data []byte
}

// Store persists the state document and its history. Implementations are
// safe for concurrent use, and a Put that returned nil is durable: it
// survives kill -9 of the process.
type Store interface {
	// Get returns the current record.
	Get(ctx context.Context) (Record, error)
	// Put writes data as revision rev+1 if the stored revision is still rev,
	// appending the history entries in the same atomic step. It returns
	// an error wrapping ErrConflict when the revision moved.
	Put(ctx context.Context, rev int64, data []byte, history ...[]byte) error
	// History returns the latest limit entries (all when limit <= 0),
	// oldest first.
	History(ctx context.Context, limit int) ([][]byte, error)
	// Close releases the store.
	Close() error
}

func conflict(want, got int64) error {
	return fmt.Errorf("%w: expected revision %d, store has %d", ErrConflict, want, got)
}
