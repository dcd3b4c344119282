package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Importer is a store that can take a whole state moved from another
// store: the record at its revision and the history, into an empty store.
type Importer interface {
	Import(ctx context.Context, rec Record, history [][]byte) error
}

var (
	_ Importer = (*Bolt)(nil)
	_ Importer = (*Etcd)(nil)
)

// Import writes rec (keeping its revision) and history into a store that
// was never written; it refuses one that holds a state (ErrConflict).
func (s *Bolt) Import(ctx context.Context, rec Record, history [][]byte) error {
	if rec.Revision <= 0 {
		return fmt.Errorf("import: nothing to import (revision %d)", rec.Revision)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, h := tx.Bucket(bucketState), tx.Bucket(bucketHistory)
		if b == nil || h == nil {
			return damaged(s.path, "it has no state or history bucket", nil)
		}
		if cur := decodeRev(b.Get(keyRevision)); cur != 0 || h.Stats().KeyN > 0 {
			return fmt.Errorf("import into %s: %w: it holds a state already (revision %d); import needs an empty state_dir", s.path, ErrConflict, cur)
		}
		if err := b.Put(keyRevision, encodeRev(rec.Revision)); err != nil {
			return err
		}
		if err := b.Put(keyDoc, rec.Data); err != nil {
			return err
		}
		return appendHistory(h, history)
	})
	if err != nil {
		return fmt.Errorf("import into %s: %w", s.path, err)
	}
	select {
	case s.backupKick <- struct{}{}:
	default:
	}
	return nil
}

// appendHistory appends entries to the history bucket h, in order.
func appendHistory(h *bolt.Bucket, entries [][]byte) error {
	for _, e := range entries {
		seq, err := h.NextSequence()
		if err != nil {
			return err
		}
		if err := h.Put(encodeRev(int64(seq)), e); err != nil {
			return err
		}
	}
	return nil
}
