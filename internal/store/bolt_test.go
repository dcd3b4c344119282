package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/store"
)

func openBolt(t *testing.T, dir string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return s
}

func mustGet(t *testing.T, s store.Store) store.Record {
	t.Helper()
	rec, err := s.Get(context.Background())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return rec
}

func mustHistory(t *testing.T, s store.Store, limit int) []string {
	t.Helper()
	h, err := s.History(context.Background(), limit)
	if err != nil {
		t.Fatalf("History(%d): %v", limit, err)
	}
	out := make([]string, len(h))
	for i, e := range h {
		out[i] = string(e)
	}
	return out
}

func TestBoltPutGet(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, t.TempDir())
	defer s.Close()

	if rec := mustGet(t, s); rec.Revision != 0 || rec.Data != nil {
		t.Fatalf("fresh store: Get = %+v, want revision 0 and no data", rec)
	}
	if h := mustHistory(t, s, 0); len(h) != 0 {
		t.Fatalf("fresh store: History = %q, want none", h)
	}
	if err := s.Put(ctx, 0, []byte("v1"), []byte("h1")); err != nil {
		t.Fatalf("Put(0): %v", err)
	}
	if rec := mustGet(t, s); rec.Revision != 1 || string(rec.Data) != "v1" {
		t.Fatalf("after Put(0): Get = {%d %q}, want {1 \"v1\"}", rec.Revision, rec.Data)
	}
	if err := s.Put(ctx, 1, []byte("v2"), []byte("h2"), []byte("h3")); err != nil {
		t.Fatalf("Put(1): %v", err)
	}
	if err := s.Put(ctx, 2, []byte("v3")); err != nil {
		t.Fatalf("Put(2) without history: %v", err)
	}
	if rec := mustGet(t, s); rec.Revision != 3 || string(rec.Data) != "v3" {
		t.Fatalf("after Put(2): Get = {%d %q}, want {3 \"v3\"}", rec.Revision, rec.Data)
	}

	// Get returns a copy: changing it changes nothing stored.
	rec := mustGet(t, s)
	rec.Data[0] = 'X'
	if again := mustGet(t, s); string(again.Data) != "v3" {
		t.Errorf("Get data aliases the store: now %q", again.Data)
	}
}

func TestBoltPutConflict(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, t.TempDir())
	defer s.Close()
	if err := s.Put(ctx, 0, []byte("v1"), []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, 1, []byte("v2"), []byte("h2")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		rev  int64
	}{
		{"stale", 1},
		{"never written", 0},
		{"from the future", 7},
		{"negative", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Put(ctx, tt.rev, []byte("lost"), []byte("lost history"))
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Put(%d) = %v, want ErrConflict", tt.rev, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.rev)) || !strings.Contains(err.Error(), "2") {
				t.Errorf("error %q should name both revisions", err)
			}
			if rec := mustGet(t, s); rec.Revision != 2 || string(rec.Data) != "v2" {
				t.Errorf("after conflict: Get = {%d %q}, want {2 \"v2\"}", rec.Revision, rec.Data)
			}
			if h := mustHistory(t, s, 0); !reflect.DeepEqual(h, []string{"h1", "h2"}) {
				t.Errorf("after conflict: History = %q, want [h1 h2]", h)
			}
		})
	}
}

func TestBoltPutCancelled(t *testing.T) {
	s := openBolt(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, 0, []byte("v1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	if rec := mustGet(t, s); rec.Revision != 0 {
		t.Errorf("cancelled Put wrote revision %d", rec.Revision)
	}
}

func TestBoltHistory(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, t.TempDir())
	defer s.Close()
	// Ten entries over four writes, so entries of one Put stay in order.
	writes := [][]string{{"e0", "e1", "e2"}, {"e3"}, {}, {"e4", "e5", "e6", "e7", "e8", "e9"}}
	for rev, hs := range writes {
		var h [][]byte
		for _, e := range hs {
			h = append(h, []byte(e))
		}
		if err := s.Put(ctx, int64(rev), []byte("doc"), h...); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		limit int
		want  []string
	}{
		{"all with zero", 0, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}},
		{"all with negative", -1, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}},
		{"latest one", 1, []string{"e9"}},
		{"latest three oldest first", 3, []string{"e7", "e8", "e9"}},
		{"exactly all", 10, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}},
		{"more than all", 50, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustHistory(t, s, tt.limit); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("History(%d) = %q, want %q", tt.limit, got, tt.want)
			}
		})
	}
}

func TestBoltReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openBolt(t, dir)
	for rev := range int64(3) {
		if err := s.Put(ctx, rev, fmt.Appendf(nil, "v%d", rev+1), fmt.Appendf(nil, "h%d", rev+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openBolt(t, dir)
	defer s.Close()
	if rec := mustGet(t, s); rec.Revision != 3 || string(rec.Data) != "v3" {
		t.Errorf("after reopen: Get = {%d %q}, want {3 \"v3\"}", rec.Revision, rec.Data)
	}
	if h := mustHistory(t, s, 0); !reflect.DeepEqual(h, []string{"h1", "h2", "h3"}) {
		t.Errorf("after reopen: History = %q", h)
	}
	// History sequence numbers continue after the reopen.
	if err := s.Put(ctx, 3, []byte("v4"), []byte("h4")); err != nil {
		t.Fatal(err)
	}
	if h := mustHistory(t, s, 2); !reflect.DeepEqual(h, []string{"h3", "h4"}) {
		t.Errorf("after reopen and Put: History(2) = %q", h)
	}
}

// TestBoltConcurrentPuts races read-modify-write cycles: compare-and-swap
// must let exactly the winners through, one per revision.
func TestBoltConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, t.TempDir())
	defer s.Close()

	const writers, rounds = 16, 10
	var (
		mu        sync.Mutex
		successes int
		wins      = map[int64]string{} // revision written → writer
		wg        sync.WaitGroup
		start     = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			<-start
			for r := range rounds {
				rec, err := s.Get(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				id := fmt.Sprintf("w%d-r%d", w, r)
				err = s.Put(ctx, rec.Revision, []byte(id), []byte(id))
				switch {
				case err == nil:
					mu.Lock()
					successes++
					if prev, dup := wins[rec.Revision+1]; dup {
						t.Errorf("revision %d written by both %s and %s", rec.Revision+1, prev, id)
					}
					wins[rec.Revision+1] = id
					mu.Unlock()
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("Put: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()

	t.Logf("%d of %d Puts won", successes, writers*rounds)
	rec := mustGet(t, s)
	if successes == 0 || rec.Revision != int64(successes) {
		t.Fatalf("final revision %d, successful Puts %d: want equal and positive", rec.Revision, successes)
	}
	if string(rec.Data) != wins[rec.Revision] {
		t.Errorf("final data %q, want the last winner %q", rec.Data, wins[rec.Revision])
	}
	h := mustHistory(t, s, 0)
	if len(h) != successes {
		t.Fatalf("history has %d entries, want one per successful Put (%d)", len(h), successes)
	}
	for i, e := range h {
		if want := wins[int64(i+1)]; e != want {
			t.Errorf("history[%d] = %q, want %q (the writer of revision %d)", i, e, want, i+1)
		}
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for bbolt's 3s lock timeout")
	}
	t.Parallel() // mostly waiting: let the other tests run meanwhile
	dir := t.TempDir()
	s := openBolt(t, dir)
	defer s.Close()

	begin := time.Now()
	s2, err := store.OpenBolt(dir)
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBolt on a held state dir succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("error %q should name the state dir", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("second OpenBolt took %v to fail", d)
	}
}
