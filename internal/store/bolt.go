package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketState   = []byte("state")
	bucketHistory = []byte("history")
	keyDoc        = []byte("doc")
	keyRevision   = []byte("revision")
)

// File names inside state_dir.
const (
	// DBFile is the state file.
	DBFile = "cutover.db"
	// BackupFile is the last good copy of DBFile, rewritten after each
	// transition once the copy passed bbolt's consistency check.
	BackupFile = "cutover.db.bak"
)

// lockTimeout is how long OpenBolt waits for another process's lock.
const lockTimeout = 3 * time.Second

// DamagedError is a state file that exists but cannot be used as it is.
// The store never starts afresh over it: the operator restores a copy.
type DamagedError struct {
	// Path is the file.
	Path string
	// Problem says what is wrong with it.
	Problem string
	// Err is the underlying error, if any.
	Err error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("state file %s is damaged: %s (cutover will not start afresh over it: restore the last good copy, see `cutover state check` and docs/operations.md)", e.Path, e.Problem)
}

func (e *DamagedError) Unwrap() error { return e.Err }

func damaged(path, problem string, err error) *DamagedError {
	return &DamagedError{Path: path, Problem: problem, Err: err}
}

// Bolt is a Store in one bbolt file: the default, embedded store of a
// single gateway.
type Bolt struct {
	db   *bolt.DB
	file *os.File // db's file, for release
	path string
	log  *slog.Logger

	backupKick chan struct{} // a transition was written: refresh the backup
	stop       chan struct{} // closed by Close
	done       chan struct{} // closed when the backup loop has returned
	closeOnce  sync.Once

	// broken is set once bbolt panicked on a damaged page; every later
	// call fails with it.
	broken atomic.Pointer[DamagedError]

	bmu       sync.Mutex // guards the backup's record below
	backupErr *BackupLag // the backups failing since, nil when the last one worked
}

// BackupLag says that the backup file is behind the state: the backups
// have failed since Since, and the backup holds an older revision.
type BackupLag struct {
	// Error is the last failed backup's error.
	Error string
	// Since is when backups began to fail.
	Since time.Time
	// Revision is the revision the backup file holds, 0 when there is
	// none.
	Revision int64
}

// BackupLag returns the backup's lag, nil while the last backup worked
// (or none was due yet).
func (s *Bolt) BackupLag() *BackupLag {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.backupErr == nil {
		return nil
	}
	l := *s.backupErr
	return &l
}

var _ Store = (*Bolt)(nil)

// BoltOption configures OpenBolt.
type BoltOption func(*Bolt)

// WithLogger makes the store log to l (a failed backup); the default is
// slog.Default().
func WithLogger(l *slog.Logger) BoltOption {
	return func(s *Bolt) {
		if l != nil {
			s.log = l
		}
	}
}

// OpenBolt opens the store file cutover.db in dir, creating it (and dir)
// on the first start. A file that exists but is empty, unreadable or
// lacks what cutover writes is a *DamagedError, never a fresh start. It
// fails after a few seconds if another process holds the file.
func OpenBolt(dir string, opts ...BoltOption) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, DBFile)
	if err := ensureFile(path); err != nil {
		return nil, err
	}
	db, file, err := openDB(path, false, lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Bolt{db: db, file: file, path: path, log: slog.Default(),
		backupKick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	// The whole consistency check, as `cutover state check` runs it: with a
	// damaged meta page bbolt opens the other one, the transaction before,
	// so the state would go back a revision (a rollback undone, the other
	// pool live again) without a word.
	if err := s.check(); err != nil {
		_ = s.release()
		return nil, err
	}
	if _, err := s.inspect(); err != nil {
		_ = s.release()
		return nil, err
	}
	// Temporary files a crash left behind (the lock is ours now).
	if left, err := filepath.Glob(filepath.Join(dir, DBFile+"*.new-*")); err == nil {
		for _, f := range left {
			_ = os.Remove(f)
		}
	}
	go s.backupLoop()
	if _, err := os.Stat(filepath.Join(dir, BackupFile)); errors.Is(err, fs.ErrNotExist) {
		s.backupKick <- struct{}{} // no backup yet: a new state_dir, or one from before backups
	}
	return s, nil
}

// ensureFile creates an initialised state file at path if there is none.
// It builds the file aside and links it into place, so a crash never
// leaves a half-made cutover.db, and two processes racing here end up
// with the same file.
func ensureFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Size() == 0:
		return damaged(path, "the file is empty (0 bytes)", nil)
	case err == nil && !fi.Mode().IsRegular():
		return damaged(path, "not a regular file", nil)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("state file %s: %w", path, err)
	}
	bak := filepath.Join(filepath.Dir(path), BackupFile)
	if _, err := os.Stat(bak); err == nil {
		return &DamagedError{Path: path, Problem: fmt.Sprintf("it is missing, but its backup %s exists: restore the backup (cp %s %s), or remove it to start afresh", bak, bak, path)}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), DBFile+".new-*")
	if err != nil {
		return fmt.Errorf("create state file in %s: %w", filepath.Dir(path), err)
	}
	name := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(name)
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("create state file %s: %w", name, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		st, err := tx.CreateBucket(bucketState)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketHistory); err != nil {
			return err
		}
		return st.Put(keyRevision, encodeRev(0))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initialise state file %s: %w", name, err)
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename instead (a second
		// process creating the file at the same moment may replace it).
		if err := os.Rename(name, path); err != nil {
			return fmt.Errorf("create state file %s: %w", path, err)
		}
	}
	return syncDir(filepath.Dir(path))
}

// openDB opens the bbolt file at path. bbolt panics on some damaged pages;
// that becomes a *DamagedError too. The hint about another cutover is
// given only when the lock could not be taken.
func openDB(path string, readOnly bool, timeout time.Duration) (db *bolt.DB, file *os.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			if file != nil { // release the lock bbolt took
				unlock(file)
				_ = file.Close()
			}
			db, file, err = nil, nil, damaged(path, fmt.Sprintf("bbolt cannot read it: %v", r), nil)
		}
	}()
	if err := checkLength(path); err != nil {
		return nil, nil, err
	}
	open := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, OpenFile: open})
	switch {
	case err == nil:
		return db, file, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, nil, fmt.Errorf("open state store %s: still locked after %s (is another cutover using this state_dir?): %w", path, timeout, err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, nil, damaged(path, err.Error(), err)
	}
	return nil, nil, fmt.Errorf("open state store %s: %w", path, err)
}

// guard turns a bbolt panic (a damaged page met while reading) into a
// *DamagedError in *err, and marks the store broken: bbolt's own clean-up
// after such a panic may panic too and leave its locks held, so the
// handle is not used again.
func (s *Bolt) guard(err *error) {
	if r := recover(); r != nil {
		de := damaged(s.path, fmt.Sprintf("bbolt cannot read it: %v", r), nil)
		s.broken.CompareAndSwap(nil, de)
		*err = de
	}
}

func (s *Bolt) view(fn func(*bolt.Tx) error) (err error) {
	if de := s.broken.Load(); de != nil {
		return de
	}
	defer s.guard(&err)
	return s.db.View(fn)
}

func (s *Bolt) update(fn func(*bolt.Tx) error) (err error) {
	if de := s.broken.Load(); de != nil {
		return de
	}
	defer s.guard(&err)
	return s.db.Update(fn)
}

// Summary describes a readable state file.
type Summary struct {
	// Revision is the stored revision, 0 before the first write.
	Revision int64
	// HistoryEvents counts the history entries.
	HistoryEvents int
	// Doc is the state document (nil at revision 0).
	Doc []byte
	// UnreadableEvents counts the history entries that are not JSON
	// (damaged in place): the state starts, and the history shows each
	// as damaged.
	UnreadableEvents int
}

// inspect checks that the file holds what cutover writes: both buckets,
// an 8-byte revision and, past revision 0, the document. A file whose
// state bucket and history are both empty was never written (an older
// cutover created it and stopped): it counts as revision 0.
func (s *Bolt) inspect() (Summary, error) {
	var sum Summary
	var problem string
	err := s.view(func(tx *bolt.Tx) error {
		st, hist := tx.Bucket(bucketState), tx.Bucket(bucketHistory)
		if hist != nil {
			sum.HistoryEvents = hist.Stats().KeyN
			_ = hist.ForEach(func(_, v []byte) error {
				if !json.Valid(v) {
					sum.UnreadableEvents++
				}
				return nil
			})
		}
		switch {
		case st == nil:
			problem = "it has no state bucket"
			return nil
		case hist == nil:
			problem = "it has no history bucket"
			return nil
		}
		rev := st.Get(keyRevision)
		doc := st.Get(keyDoc)
		switch {
		case rev == nil && doc == nil && sum.HistoryEvents == 0:
			return nil // never written
		case rev == nil:
			problem = fmt.Sprintf("it has no revision key, but %d history events", sum.HistoryEvents)
		case len(rev) != 8:
			problem = fmt.Sprintf("its revision key holds %d bytes, want 8", len(rev))
		default:
			sum.Revision = decodeRev(rev)
			switch {
			case sum.Revision < 0:
				problem = fmt.Sprintf("its revision is negative (%d)", sum.Revision)
			case sum.Revision > 0 && doc == nil:
				problem = fmt.Sprintf("it is at revision %d but holds no state document", sum.Revision)
			case doc != nil:
				sum.Doc = append([]byte(nil), doc...)
			}
		}
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	if problem != "" {
		return Summary{}, damaged(s.path, problem, nil)
	}
	return sum, nil
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context) (Record, error) {
	var rec Record
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		if b == nil {
			return damaged(s.path, "it has no state bucket", nil)
		}
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

// Put implements Store. After a successful write the backup file is
// refreshed in the background.
func (s *Bolt) Put(ctx context.Context, rev int64, data []byte, history ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		h := tx.Bucket(bucketHistory)
		if b == nil || h == nil {
			return damaged(s.path, "it has no state or history bucket", nil)
		}
		if cur := decodeRev(b.Get(keyRevision)); cur != rev {
			return conflict(rev, cur)
		}
		if err := b.Put(keyRevision, encodeRev(rev+1)); err != nil {
			return err
		}
		if err := b.Put(keyDoc, data); err != nil {
			return err
		}
		return appendHistory(h, history)
	})
	if err != nil {
		return fmt.Errorf("write state revision %d: %w", rev+1, err)
	}
	select {
	case s.backupKick <- struct{}{}:
	default: // a refresh is already due; it will copy this revision too
	}
	return nil
}

// History implements Store.
func (s *Bolt) History(ctx context.Context, limit int) ([][]byte, error) {
	var out [][]byte
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		if b == nil {
			return damaged(s.path, "it has no history bucket", nil)
		}
		c := b.Cursor()
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

// Close implements Store. It writes a last backup if a write is not
// backed up yet. A store that met damaged pages returns the damage.
func (s *Bolt) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.release()
}

// release closes the database, or, once bbolt panicked (its locks may be
// held for good), only releases the file lock so that the file can be
// opened again, and returns the damage.
func (s *Bolt) release() error {
	if de := s.broken.Load(); de != nil {
		unlock(s.file)
		_ = s.file.Close()
		return de
	}
	return s.db.Close()
}

// backupLoop refreshes the backup file after writes, one at a time; a
// burst of writes makes one copy of the latest.
func (s *Bolt) backupLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.backupKick:
		case <-s.stop:
			select {
			case <-s.backupKick:
			default:
				return
			}
		}
		err := s.Backup()
		s.bmu.Lock()
		first := err != nil && s.backupErr == nil
		s.bmu.Unlock()
		held := int64(0) // the revision the backup holds, read once per lag
		if first {
			if sum, cerr := CheckFile(filepath.Join(filepath.Dir(s.path), BackupFile)); cerr == nil {
				held = sum.Revision
			}
		}
		s.bmu.Lock()
		switch {
		case err == nil:
			s.backupErr = nil
		case first:
			s.backupErr = &BackupLag{Since: time.Now(), Revision: held}
		}
		if err != nil {
			s.backupErr.Error = err.Error()
		}
		lag := s.backupErr
		s.bmu.Unlock()
		if err != nil {
			kept := "the previous backup is kept"
			if lag.Revision == 0 {
				kept = "there is no backup yet"
			}
			s.log.Error("state backup failed; "+kept, "file", s.path+".bak", "backup_revision", lag.Revision, "error", err)
		}
	}
}

// Backup copies the current state to BackupFile beside the state file
// (through a temporary file, checked with bbolt's consistency check
// before it replaces the previous backup, and fsynced).
func (s *Bolt) Backup() error {
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, BackupFile+".new-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	err = s.view(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(tmp)
		return err
	})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup to %s: %w", name, err)
	}
	if _, err := CheckFile(name); err != nil {
		return fmt.Errorf("backup copy failed its check, not kept: %w", err)
	}
	if err := os.Rename(name, filepath.Join(dir, BackupFile)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return syncDir(dir)
}

// CheckFile checks the state file at path without changing it: it must be
// a non-empty bbolt file that passes bbolt's consistency check and holds
// what cutover writes. It fails (not a *DamagedError) when a running
// cutover holds the file.
func CheckFile(path string) (Summary, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return Summary{}, fmt.Errorf("state file %s: %w", path, err)
	case fi.Size() == 0:
		return Summary{}, damaged(path, "the file is empty (0 bytes)", nil)
	}
	db, file, err := openDB(path, true, time.Second)
	if err != nil {
		return Summary{}, err
	}
	s := &Bolt{db: db, file: file, path: path}
	defer s.release()
	if err := s.check(); err != nil {
		return Summary{}, err
	}
	return s.inspect()
}

// check runs bbolt's consistency check over the whole file: a
// *DamagedError with the first problems found, or nil.
func (s *Bolt) check() error {
	var problems []error
	err := s.view(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 10 {
				problems = append(problems, e)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return damaged(s.path, "bbolt's consistency check failed: "+errors.Join(problems...).Error(), problems[0])
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

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
