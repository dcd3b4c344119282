package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/store"
)

func openEtcd(t *testing.T, srv *etcdtest.Server, prefix, dir string) *store.Etcd {
	t.Helper()
	s, err := store.OpenEtcd(store.EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: prefix, Timeout: time.Second, LocalDir: dir})
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// await polls cond (bounded) until it holds.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestEtcdPutIsCompareAndSwapWithHistory(t *testing.T) {
	srv := etcdtest.New(t)
	a := openEtcd(t, srv, "/t/cas/", "")
	b := openEtcd(t, srv, "/t/cas/", "")
	ctx := context.Background()
	if err := a.Put(ctx, 0, []byte(`{"live":"blue"}`), []byte(`e1`)); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	// b writes on the same revision as a second writer: one wins.
	errA := a.Put(ctx, 1, []byte(`{"live":"green"}`), []byte(`e2a`))
	errB := b.Put(ctx, 1, []byte(`{"live":"blue"}`), []byte(`e2b`))
	if errA != nil || !errors.Is(errB, store.ErrConflict) {
		t.Fatalf("Put a = %v, Put b = %v; want nil and ErrConflict", errA, errB)
	}
	rec, err := b.Get(ctx)
	if err != nil || rec.Revision != 2 || string(rec.Data) != `{"live":"green"}` {
		t.Fatalf("Get = %d %s %v, want revision 2 green", rec.Revision, rec.Data, err)
	}
	h, err := b.History(ctx, 0)
	if err != nil || fmt.Sprintf("%s", h) != "[e1 e2a]" {
		t.Fatalf("History = %s %v, want [e1 e2a]", h, err)
	}
	if h, _ := b.History(ctx, 1); fmt.Sprintf("%s", h) != "[e2a]" {
		t.Errorf("History(1) = %s, want [e2a]", h)
	}
	// Another prefix is another fleet.
	other := openEtcd(t, srv, "/t/other/", "")
	if rec, _ := other.Get(ctx); rec.Revision != 0 {
		t.Errorf("other prefix at revision %d, want 0", rec.Revision)
	}
}

func TestEtcdFencedWriteFailsAfterLeadershipMoved(t *testing.T) {
	srv := etcdtest.New(t)
	s := openEtcd(t, srv, "/t/fence/", "")
	ctx := context.Background()
	cli := s.Client()
	put, err := cli.Put(ctx, "/t/fence/leader/a", "gw-a")
	if err != nil {
		t.Fatal(err)
	}
	fctx := store.WithFence(ctx, "/t/fence/leader/a", put.Header.Revision)
	if err := s.Put(fctx, 0, []byte(`{}`)); err != nil {
		t.Fatalf("fenced Put while leader: %v", err)
	}
	// The election key is deleted and made again (a new leader term).
	if _, err := cli.Delete(ctx, "/t/fence/leader/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/t/fence/leader/a", "gw-b"); err != nil {
		t.Fatal(err)
	}
	err = s.Put(fctx, 1, []byte(`{"x":1}`))
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("fenced Put after the term ended = %v, want ErrFenced", err)
	}
	if rec, _ := s.Get(ctx); rec.Revision != 1 {
		t.Errorf("revision %d after a fenced write, want 1 (nothing written)", rec.Revision)
	}
}

func TestEtcdWatchFollowsAndSurvivesCompaction(t *testing.T) {
	srv := etcdtest.New(t)
	w := openEtcd(t, srv, "/t/watch/", "")
	wr := openEtcd(t, srv, "/t/watch/", "")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan store.Record, 100)
	done := make(chan struct{})
	go func() { defer close(done); w.Watch(ctx, func(r store.Record) { got <- r }) }()
	defer func() { cancel(); <-done }()
	if r := <-got; r.Revision != 0 {
		t.Fatalf("first record revision %d, want 0", r.Revision)
	}
	for rev := int64(0); rev < 3; rev++ {
		if err := wr.Put(ctx, rev, []byte(fmt.Sprintf(`{"n":%d}`, rev+1))); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.Revision != rev+1 || string(r.Data) != fmt.Sprintf(`{"n":%d}`, rev+1) {
			t.Fatalf("watched %d %s, want revision %d", r.Revision, r.Data, rev+1)
		}
	}
	// Compact past the revisions the watch has seen: a watch that must
	// restart reads again and carries on without going backwards.
	cli := wr.Client()
	for i := range 5 {
		if _, err := cli.Put(ctx, "/t/unrelated", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "/t/unrelated")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := wr.Put(ctx, 3, []byte(`{"n":4}`)); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Revision != 4 {
		t.Fatalf("after compaction watched revision %d, want 4", r.Revision)
	}
}

func TestEtcdDownRefusesWritesAndServesLocalCopy(t *testing.T) {
	srv := etcdtest.New(t)
	dir := t.TempDir()
	s := openEtcd(t, srv, "/t/down/", dir)
	ctx := context.Background()
	if err := s.Put(ctx, 0, []byte(`{"live":"green"}`)); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLocal(rec); err != nil {
		t.Fatalf("SaveLocal: %v", err)
	}
	srv.Stop()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with etcd stopped")
	}
	if up, _ := s.Health(); up {
		t.Error("Health says up with etcd stopped")
	}
	if err := s.Put(ctx, 1, []byte(`{"live":"blue"}`)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Put with etcd down = %v, want ErrUnavailable", err)
	}
	// A restart while etcd is down: a new store reads the local copy.
	s2 := openEtcd(t, srv, "/t/down/", dir)
	rec2, err := s2.Get(ctx)
	if err != nil || rec2.Revision != 1 || string(rec2.Data) != `{"live":"green"}` || !s2.FromLocal() {
		t.Fatalf("Get while down = %d %s %v (from local %v), want the local copy at revision 1", rec2.Revision, rec2.Data, err, s2.FromLocal())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	await(t, "etcd answering again", func() bool { return s.Ping(ctx) == nil })
	if err := s.Put(ctx, 1, []byte(`{"live":"blue"}`)); err != nil {
		t.Fatalf("Put after etcd returned: %v", err)
	}
}

func TestEtcdImportKeepsRevisionAndHistory(t *testing.T) {
	srv := etcdtest.New(t)
	s := openEtcd(t, srv, "/t/import/", "")
	ctx := context.Background()
	var hist [][]byte
	for i := range 250 {
		hist = append(hist, []byte(fmt.Sprintf("e%03d", i)))
	}
	if err := s.Import(ctx, store.Record{Revision: 7, Data: []byte(`{"live":"green"}`)}, hist); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if err := s.Import(ctx, store.Record{Revision: 7, Data: []byte(`{}`)}, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second Import = %v, want ErrConflict", err)
	}
	if err := s.Put(ctx, 7, []byte(`{"live":"blue"}`), []byte("e250")); err != nil {
		t.Fatalf("Put after import: %v", err)
	}
	h, err := s.History(ctx, 0)
	if err != nil || len(h) != 251 || string(h[0]) != "e000" || string(h[250]) != "e250" {
		t.Fatalf("History after import: %d entries, first %s last %s, %v", len(h), h[0], h[len(h)-1], err)
	}
}
