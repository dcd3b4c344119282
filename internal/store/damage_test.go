package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cutover-dev/cutover/internal/store"
)

// written returns a state dir whose store holds revisions 1..n, closed.
func written(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := openBolt(t, dir)
	for i := range n {
		if err := s.Put(context.Background(), int64(i), fmt.Appendf(nil, `{"v":%d}`, i+1), fmt.Appendf(nil, "event %d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// zeroDataPages overwrites every page after the two meta pages with zeros,
// keeping the meta pages (and so their checksums) intact: the freelist
// and the b-tree pages the meta pages point at become invalid.
func zeroDataPages(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(os.Getpagesize())
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, fi.Size()-2*ps), 2*ps); err != nil {
		t.Fatal(err)
	}
}

// edit changes the bbolt file at path directly, as damage or a careless
// tool might.
func edit(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedStateFileIsAnError: a state file that exists but cannot be
// used is an error naming the file and what is wrong, never a silent
// first start (a regression: a 0-byte file, or one without its state
// bucket or revision, reset cutover to revision 1 and the config's live
// pool) and never a panic (a regression: damaged pages panicked inside
// bbolt.Open, exit 2). Only a held lock gets the "another cutover" hint.
func TestDamagedStateFileIsAnError(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"empty file", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "empty (0 bytes)"},
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "invalid database"},
		{"data pages zeroed", zeroDataPages, "bbolt cannot read it"},
		{"state bucket deleted", func(t *testing.T, path string) {
			edit(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("state")) })
		}, "no state bucket"},
		{"revision key deleted", func(t *testing.T, path string) {
			edit(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Delete([]byte("revision")) })
		}, "no revision key, but 3 history events"},
		{"state file deleted, backup kept", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, "it is missing, but its backup"},
		// bbolt opens the other meta page, the transaction before: the
		// state went back a revision without a word (a rollback undone).
		{"second meta page damaged", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := bytes.Repeat([]byte{0x5a}, 512)
			if _, err := f.WriteAt(junk, int64(os.Getpagesize())); err != nil {
				t.Fatal(err)
			}
		}, "consistency check failed"},
		{"document deleted", func(t *testing.T, path string) {
			edit(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Delete([]byte("doc")) })
		}, "at revision 3 but holds no state document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := written(t, 3)
			path := filepath.Join(dir, store.DBFile)
			tc.damage(t, path)
			s, err := store.OpenBolt(dir)
			if err == nil {
				rec, _ := s.Get(context.Background())
				s.Close()
				t.Fatalf("OpenBolt on a damaged file succeeded (revision %d): want an error", rec.Revision)
			}
			var de *store.DamagedError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenBolt: %v; want a *DamagedError naming %s and saying %q", err, path, tc.want)
			}
			if strings.Contains(err.Error(), "another cutover") {
				t.Errorf("OpenBolt: %v; the lock hint is only for a held lock", err)
			}
			if _, err := store.CheckFile(path); tc.name != "state file deleted, backup kept" && (!errors.As(err, &de) || !strings.Contains(err.Error(), path)) {
				t.Errorf("CheckFile: %v; want a *DamagedError naming %s", err, path)
			}
			if fi, err := os.Stat(path); tc.name == "empty file" && (err != nil || fi.Size() != 0) {
				t.Errorf("the damaged file was changed: %v %v", fi, err)
			}
		})
	}
}

// TestDamageWhileOpenIsAnError: pages damaged under a running store make
// reads and writes fail with an error naming the file, not a panic.
func TestDamageWhileOpenIsAnError(t *testing.T) {
	dir := written(t, 3)
	s := openBolt(t, dir)
	defer s.Close()
	zeroDataPages(t, filepath.Join(dir, store.DBFile)) // bbolt maps the file shared: it sees this
	ctx := context.Background()
	if _, err := s.Get(ctx); err == nil || !strings.Contains(err.Error(), store.DBFile) {
		t.Errorf("Get on damaged pages: %v, want an error naming the file", err)
	}
	if _, err := s.History(ctx, 0); err == nil || !strings.Contains(err.Error(), store.DBFile) {
		t.Errorf("History on damaged pages: %v, want an error naming the file", err)
	}
	if err := s.Put(ctx, 3, []byte("{}")); err == nil {
		t.Errorf("Put on damaged pages succeeded")
	}
	// Close released the lock: opening again names the damage, it does
	// not wait for a lock.
	var de *store.DamagedError
	if err := s.Close(); !errors.As(err, &de) {
		t.Errorf("Close of a damaged store: %v, want the damage", err)
	}
	if s2, err := store.OpenBolt(dir); !errors.As(err, &de) {
		if err == nil {
			s2.Close()
		}
		t.Errorf("OpenBolt after the damage: %v, want a *DamagedError", err)
	}
}

// TestBackupIsTheLastGoodCopy: after writes the backup file holds the
// latest revision and passes the check; restoring it (copying it over the
// state file) brings the state and history back.
func TestBackupIsTheLastGoodCopy(t *testing.T) {
	dir := written(t, 3) // Close waits for the backup of revision 3
	bak := filepath.Join(dir, store.BackupFile)
	sum, err := store.CheckFile(bak)
	if err != nil || sum.Revision != 3 || sum.HistoryEvents != 3 || string(sum.Doc) != `{"v":3}` {
		t.Fatalf("CheckFile(backup) = %+v, %v; want revision 3 with 3 events", sum, err)
	}
	path := filepath.Join(dir, store.DBFile)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bak)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, dir)
	defer s.Close()
	if rec := mustGet(t, s); rec.Revision != 3 || string(rec.Data) != `{"v":3}` {
		t.Fatalf("restored store: %+v, want revision 3", rec)
	}
	if h := mustHistory(t, s, 0); len(h) != 3 || h[2] != "event 3" {
		t.Fatalf("restored history: %q", h)
	}
}

// TestFreshStoreStaysFresh: a state file that was created but never
// written (a first start stopped before its first write) opens at
// revision 0, as a first start should.
func TestFreshStoreStaysFresh(t *testing.T) {
	dir := t.TempDir()
	openBolt(t, dir).Close()
	s := openBolt(t, dir)
	defer s.Close()
	if rec := mustGet(t, s); rec.Revision != 0 {
		t.Fatalf("reopened fresh store at revision %d, want 0", rec.Revision)
	}
}

// pagesInUse reads the high-water page id and page size from the first
// meta page of the bbolt file at path (bbolt's layout, little-endian).
func pagesInUse(t *testing.T, path string) (pgid, pageSize int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 16+64 {
		t.Fatalf("read %s: %v", path, err)
	}
	return int64(binary.LittleEndian.Uint64(b[16+40:])), int64(binary.LittleEndian.Uint32(b[16+8:]))
}

// TestTruncatedStateFileIsAnError: a state file cut short (a partial
// copy, a disk that filled up) is a *DamagedError naming the file for
// OpenBolt and CheckFile, whatever the length (a regression: under two
// pages it was a plain error without the restore hint, and cut inside
// the pages in use bbolt read past the end of the file and the process
// died of SIGBUS).
func TestTruncatedStateFileIsAnError(t *testing.T) {
	dir := written(t, 3)
	path := filepath.Join(dir, store.DBFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pgid, ps := pagesInUse(t, path)
	lengths := []int64{100, ps, ps + 100}
	for n := 2 * ps; n < pgid*ps; n += ps {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if err := os.WriteFile(path, good[:n], 0o600); err != nil {
				t.Fatal(err)
			}
			var de *store.DamagedError
			s, err := store.OpenBolt(dir)
			if err == nil {
				s.Close()
				t.Fatalf("OpenBolt on a file cut to %d of %d bytes succeeded", n, pgid*ps)
			}
			if !errors.As(err, &de) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("OpenBolt: %v; want a *DamagedError naming %s and saying it is truncated", err, path)
			}
			if _, err := store.CheckFile(path); !errors.As(err, &de) || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("CheckFile: %v; want a *DamagedError saying it is truncated", err)
			}
		})
	}
	// Whole again: it opens.
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatalf("OpenBolt on the restored file: %v", err)
	}
	s.Close()
}

// TestBackupLagIsReported: while the backup cannot be refreshed, the store
// says since when, why, and which revision the backup still holds (the
// only sign was a log line, and a restore would silently lose every
// transition since); the next backup that works clears it.
func TestBackupLagIsReported(t *testing.T) {
	dir := written(t, 2) // the backup holds revision 2
	s := openBolt(t, dir)
	defer s.Close()
	bak := filepath.Join(dir, store.BackupFile)
	if err := os.Rename(bak, bak+".good"); err != nil {
		t.Fatal(err)
	}
	// A directory where the backup goes: the rename onto it fails.
	if err := os.MkdirAll(filepath.Join(bak, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	put := func(rev int64) {
		t.Helper()
		if err := s.Put(context.Background(), rev, fmt.Appendf(nil, `{"v":%d}`, rev+1), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	await := func(what string, ok func(*store.BackupLag) bool) *store.BackupLag {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l := s.BackupLag()
			if ok(l) {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("backup lag %+v, want %s", l, what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	put(2)
	l := await("a failed backup", func(l *store.BackupLag) bool { return l != nil })
	if l.Revision != 0 || l.Error == "" || l.Since.IsZero() {
		t.Fatalf("lag %+v, want no usable backup (a directory), the error and since when", l)
	}
	if err := os.RemoveAll(bak); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bak+".good", bak); err != nil {
		t.Fatal(err)
	}
	put(3)
	await("none once a backup worked", func(l *store.BackupLag) bool { return l == nil })
	if sum, err := store.CheckFile(bak); err != nil || sum.Revision != 4 {
		t.Fatalf("backup after the lag: %+v %v, want revision 4", sum, err)
	}
}

// TestBoltImportOverAStateIsRefused: an import into a state_dir that
// holds a state is refused, saying so (it said "state revision conflict:
// ... holds revision 16 already"), and changes nothing.
func TestBoltImportOverAStateIsRefused(t *testing.T) {
	dir := written(t, 2)
	s := openBolt(t, dir)
	defer s.Close()
	err := s.Import(context.Background(), store.Record{Revision: 7, Data: []byte(`{"live":"green"}`)}, nil)
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "holds a state already (revision 2)") {
		t.Fatalf("Import over revision 2 = %v, want a refusal saying the state_dir holds a state", err)
	}
	if rec := mustGet(t, s); rec.Revision != 2 {
		t.Fatalf("after the refused import: revision %d, want 2", rec.Revision)
	}
}
