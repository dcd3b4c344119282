package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketState   = []byte("state")
	bucketHistory = []byte("history")
	keyDoc        = []byte("doc")
	keyRevision   = []byte("revision")
)

// Bolt is a Store in one bbolt file: the default, embedded store of a
// single gateway.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating if needed) the store file cutover.db in dir.
// It fails after a few seconds if another process holds the file.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "cutover.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state store %s (is another cutover using this state_dir?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init state store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context) (Record, error) {
	var rec Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		rec.Revision = decodeRev(b.Get(keyRevision))
		if d := b.Get(keyDoc); d != nil {
			rec.Data = append([]byte(nil), d...)
		}
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("read state: %w", err)
	}
	return rec, nil
}

// Put implements Store.
func (s *Bolt) Put(ctx context.Context, rev int64, data []byte, history ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		if cur := decodeRev(b.Get(keyRevision)); cur != rev {
			return conflict(rev, cur)
		}
		if err := b.Put(keyRevision, encodeRev(rev+1)); err != nil {
			return err
		}
		if err := b.Put(keyDoc, data); err != nil {
			return err
		}
		h := tx.Bucket(bucketHistory)
		for _, e := range history {
			seq, err := h.NextSequence()
			if err != nil {
				return err
			}
			if err := h.Put(encodeRev(int64(seq)), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write state revision %d: %w", rev+1, err)
	}
	return nil
}

// History implements Store.
func (s *Bolt) History(ctx context.Context, limit int) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			out = append(out, append([]byte(nil), v...))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Close implements Store.
func (s *Bolt) Close() error { return s.db.Close() }

func encodeRev(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

func decodeRev(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}
